//! The metrics flags shared by the commands that run an app (`demo`, `run`):
//! the final scrape and the Pushgateway, parsed once.

use std::time::Duration;

use anyhow::Context as _;
use lameduck::metrics::{Metrics, Pushgateway};

use crate::duration::parse_duration;

/// Where the last metrics go at a shutdown.
#[derive(Debug, clap::Args)]
pub struct MetricsFlags {
    /// How long Closing waits for one more scrape of /metrics (on --admin)
    /// once the shutdown's counts are final: the scrape interval and a bit
    /// (0s: no wait); counted in the budget
    #[arg(long, value_name = "DURATION", value_parser = parse_duration, allow_hyphen_values = true, default_value = "0s")]
    pub final_scrape: Duration,
    /// A Prometheus Pushgateway (http://HOST:PORT) that gets the final
    /// metrics when no scrape came for them (grouping key job=the app's
    /// name, instance=the host's name, or --push-instance)
    #[arg(long, value_name = "URL")]
    pub pushgateway: Option<String>,
    /// The grouping key's instance for --pushgateway
    #[arg(long, value_name = "NAME", requires = "pushgateway")]
    pub push_instance: Option<String>,
}

impl MetricsFlags {
    /// The app's metrics, as the flags say.
    ///
    /// # Errors
    ///
    /// When `--pushgateway` is not an `http://HOST:PORT` URL.
    pub fn metrics(&self) -> anyhow::Result<Metrics> {
        let mut metrics = Metrics::new().final_scrape(self.final_scrape);
        if let Some(url) = &self.pushgateway {
            let mut gateway = Pushgateway::new(url).context("--pushgateway")?;
            if let Some(instance) = &self.push_instance {
                gateway = gateway.instance(instance);
            }
            metrics = metrics.push(gateway);
        }
        Ok(metrics)
    }
}
