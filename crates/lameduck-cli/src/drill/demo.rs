//! `lameduck drill --demo`: the drill against the built-in demo, with
//! settings that show every phase in a few seconds.

use std::net::{Ipv4Addr, TcpListener};
use std::time::Duration;

use anyhow::Context as _;

use super::Flags;

/// Fills in the target, the server command and the schedule, keeping any
/// flag the user gave.
pub(super) fn apply(args: &mut Flags) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("cannot find the lameduck binary to run the demo")?;
    let [listen, admin] = free_ports()?;
    args.url = Some(format!("http://127.0.0.1:{listen}/work?ms=5"));
    args.ready_url
        .get_or_insert_with(|| format!("http://127.0.0.1:{admin}/readyz"));
    args.command = vec![
        exe.into_os_string(),
        "demo".into(),
        "--listen".into(),
        format!("127.0.0.1:{listen}").into(),
        "--admin".into(),
        format!("127.0.0.1:{admin}").into(),
        "--drain-delay".into(),
        "1s".into(),
        "--output".into(),
        "human".into(),
    ];
    if let Some(path) = &args.flight_record {
        args.command.push("--flight-record".into());
        args.command.push(path.clone().into_os_string());
    }
    // Shorter than the usual default: the demo shuts down in about a second.
    // The demo's own signal time goes with its own duration only, and is a
    // default, not an --at: a --duration given alone moves the signal to a
    // third of it (as --help says), and `--signal none` needs no time.
    if args.duration.is_none() {
        args.duration = Some(Duration::from_secs(5));
        args.default_at = Some(Duration::from_secs(2));
    }
    Ok(())
}

/// Two ports free on loopback now. Another process could take one before
/// the demo binds it; the demo would then fail to start and the drill say
/// so, which is acceptable for a demonstration.
fn free_ports() -> anyhow::Result<[u16; 2]> {
    let a = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free port on 127.0.0.1")?;
    let b = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .context("cannot find a free port on 127.0.0.1")?;
    Ok([a.local_addr()?.port(), b.local_addr()?.port()])
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use clap::Parser as _;

    /// The drill's flags as the command line gives them.
    #[derive(Debug, clap::Parser)]
    struct Drill {
        #[command(flatten)]
        args: crate::drill::Args,
    }

    fn duration_after_demo(cli: &[&str]) -> Duration {
        let mut args = Drill::try_parse_from(cli).unwrap().args.flags;
        super::apply(&mut args).unwrap();
        args.duration.unwrap()
    }

    /// The signal plan of a demo drill, as the command line gives it.
    fn plan_after_demo(cli: &[&str]) -> anyhow::Result<Option<lameduck_drill::SignalPlan>> {
        let mut args = Drill::try_parse_from(cli).unwrap().args.flags;
        super::apply(&mut args).unwrap();
        Ok(crate::drill::config::build(&args)?.signal)
    }

    #[test]
    fn a_demo_drill_given_only_a_duration_signals_at_a_third_of_it() {
        let plan = plan_after_demo(&["drill", "--demo", "--duration", "2s"])
            .unwrap()
            .unwrap();
        assert_eq!(plan.at, Duration::from_secs(2) / 3);
        let plan = plan_after_demo(&["drill", "--demo"]).unwrap().unwrap();
        assert_eq!(plan.at, Duration::from_secs(2));
        let plan = plan_after_demo(&["drill", "--demo", "--at", "1s", "--duration", "4s"])
            .unwrap()
            .unwrap();
        assert_eq!(plan.at, Duration::from_secs(1));
    }

    #[test]
    fn a_demo_drill_without_a_signal_is_a_plain_load_test() {
        for cli in [
            &["drill", "--demo", "--signal", "none"][..],
            &["drill", "--demo", "--signal", "none", "--duration", "2s"],
        ] {
            assert!(plan_after_demo(cli).unwrap().is_none(), "{cli:?}");
        }
        let err =
            plan_after_demo(&["drill", "--demo", "--signal", "none", "--at", "1s"]).unwrap_err();
        assert!(format!("{err:#}").contains("need a --signal"), "{err:#}");
    }

    #[test]
    fn a_duration_given_to_the_demo_drill_is_kept_even_the_usual_default() {
        assert_eq!(
            duration_after_demo(&["drill", "--demo"]),
            Duration::from_secs(5)
        );
        assert_eq!(
            duration_after_demo(&["drill", "--demo", "--duration", "10s"]),
            Duration::from_secs(10)
        );
        assert_eq!(
            duration_after_demo(&["drill", "--demo", "--duration", "3s"]),
            Duration::from_secs(3)
        );
    }
}
