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
    args.duration.get_or_insert(Duration::from_secs(5));
    args.at.get_or_insert(Duration::from_secs(2));
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
