//! The benchmark's span sink: the OTLP/gRPC receiver of the tracing tests
//! (`grimos_test_support::otlp`), counting the spans the services export while they are
//! loaded with tracing on.
//!
//! Usage: `otlp-sink 127.0.0.1:PORT COUNT_FILE` (port 0: a free one). Prints `otlp-sink
//! listening on ADDR` on stdout once bound, then keeps the number of spans received in
//! `COUNT_FILE`, rewritten every 100 ms.

use std::time::Duration;

use grimos_test_support::otlp::Receiver;
use tokio::net::TcpListener;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let (Some(addr), Some(count_file)) = (args.next(), args.next()) else {
        return Err("usage: otlp-sink 127.0.0.1:PORT COUNT_FILE".into());
    };
    let listener = TcpListener::bind(addr.as_str()).await?;
    println!("otlp-sink listening on {}", listener.local_addr()?);
    let receiver = Receiver::counting(listener);
    let temporary = format!("{count_file}.tmp");
    loop {
        // Written whole, then renamed: a reader never sees half a number.
        std::fs::write(&temporary, receiver.count().to_string())?;
        std::fs::rename(&temporary, &count_file)?;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
