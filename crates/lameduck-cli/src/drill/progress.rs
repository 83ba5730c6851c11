//! The progress bar, on a terminal only.

use std::io::IsTerminal as _;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lameduck_drill::Progress;

const TICK: Duration = Duration::from_millis(100);

/// A progress bar fed from the drill's progress handle by a task.
pub struct Bar {
    task: Option<(ProgressBar, tokio::task::JoinHandle<()>)>,
}

impl Bar {
    /// Starts the bar on stderr, when it is a terminal and `wanted`.
    pub fn start(progress: Progress, wanted: bool) -> Self {
        if !wanted || !std::io::stderr().is_terminal() {
            return Bar { task: None };
        }
        let duration = progress.snapshot().duration;
        let bar = ProgressBar::with_draw_target(
            Some(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)),
            ProgressDrawTarget::stderr(),
        );
        bar.set_style(
            ProgressStyle::with_template("{spinner} [{bar:30}] {elapsed:>4} {msg}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        let handle = {
            let bar = bar.clone();
            tokio::spawn(async move {
                let mut ticks = tokio::time::interval(TICK);
                loop {
                    ticks.tick().await;
                    let s = progress.snapshot();
                    bar.set_position(
                        u64::try_from(s.elapsed.min(s.duration).as_millis()).unwrap_or(0),
                    );
                    bar.set_message(s.to_string());
                }
            })
        };
        Bar {
            task: Some((bar, handle)),
        }
    }

    /// Stops and clears the bar.
    pub async fn finish(self) {
        if let Some((bar, handle)) = self.task {
            handle.abort();
            let _ = handle.await;
            bar.finish_and_clear();
        }
    }
}
