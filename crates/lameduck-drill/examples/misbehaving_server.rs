//! A server that misbehaves on purpose, to see what the drill says about it.
//!
//! ```text
//! cargo build -p lameduck-drill --features testing --example misbehaving_server
//! lameduck drill --url http://127.0.0.1:8080/ --ready-url http://127.0.0.1:8080/readyz \
//!     -- target/debug/examples/misbehaving_server mode=exit-at-once,port=8080
//! ```
//!
//! Modes: `graceful`, `exit-at-once`, `ignore-term`, `close-first`,
//! `reset-keepalive` (see `lameduck_drill::testing`).

fn main() {
    let spec = std::env::args().nth(1).unwrap_or_default();
    let config = match lameduck_drill::testing::TargetConfig::parse(&spec) {
        Ok(config) => config,
        Err(err) => {
            eprintln!(
                "misbehaving_server: {err}\nusage: misbehaving_server mode=NAME,port=N[,delay_ms=N,drain_ms=N]"
            );
            std::process::exit(2);
        }
    };
    std::process::exit(lameduck_drill::testing::run(config));
}
