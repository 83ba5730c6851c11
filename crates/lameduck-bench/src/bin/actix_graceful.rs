//! actix-web 4 as its documentation sets it up: `HttpServer::new(..).bind(..)
//! .run()`, which installs its own signal handling. On SIGTERM it stops
//! accepting at once (the listener closes), lets the workers finish what
//! they are serving for up to `shutdown_timeout` (30 s by default, left as
//! it is) and exits. A keep-alive connection counts as being served until it
//! has been idle for the keep-alive timeout (5 s by default), so behind a
//! balancer that keeps connections open the exit comes about 5 s after the
//! balancer stops sending. `/readyz` answers 200 until the end: actix has no
//! notion of readiness.
//!
//! `actix-graceful --listen 127.0.0.1:8080`; `GET /work?ms=50`.

use std::process::ExitCode;
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpServer, web};
use clap::Parser;
use lameduck_bench::server::{ServerArgs, announce, work_ms};

fn main() -> ExitCode {
    let args = ServerArgs::parse();
    lameduck_bench::exit_code(actix_web::rt::System::new().block_on(serve(args)))
}

async fn serve(args: ServerArgs) -> anyhow::Result<()> {
    let server = HttpServer::new(|| {
        App::new()
            .route("/work", web::get().to(work))
            .route("/readyz", web::get().to(|| async { "ready\n" }))
            .route("/", web::get().to(|| async { "actix\n" }))
    })
    .bind(args.listen)?;
    for addr in server.addrs() {
        announce(addr)?;
    }
    server.run().await?;
    Ok(())
}

async fn work(req: HttpRequest) -> String {
    let ms = work_ms(req.uri().query());
    actix_web::rt::time::sleep(Duration::from_millis(ms)).await;
    format!("worked {ms} ms\n")
}
