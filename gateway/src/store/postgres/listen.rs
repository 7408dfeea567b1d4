//! `LISTEN`/`NOTIFY`: a write that makes deliveries due without claiming
//! them (an insert whose lanes were full, a release, a replay, a
//! subscription enabled again) runs [`NOTIFY`] in its transaction;
//! every gateway listens on one connection of its own and wakes its
//! dispatcher, so delivery latency does not depend on the poll interval.
//!
//! A notification is only a hint: the poller still looks now and then, so
//! one lost while the connection was down delays, never loses, a delivery.
//! After a reconnect the hooks are called once for what may have been
//! missed.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_postgres::AsyncMessage;
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_util::sync::CancellationToken;

use crate::store::DueHook;

/// The channel due work is announced on, per schema: `NOTIFY` channels are
/// database-wide, and installations in other schemas of one database (the
/// tests' parallel schemas among them) must not wake each other. Hashed,
/// because a channel name is at most 63 bytes and a schema's need not be.
macro_rules! channel_sql {
    () => {
        "'hookgate_due_' || md5(current_schema())"
    };
}
pub(super) use channel_sql;

/// The SQL a transaction runs to announce due work (delivered on commit;
/// PostgreSQL folds identical notifications of one transaction into one).
pub const NOTIFY: &str = concat!("SELECT pg_notify(", channel_sql!(), ", '')");

/// Wait before connecting again after the listening connection failed.
const RECONNECT: Duration = Duration::from_secs(1);

/// The hooks to call, shared with the store.
pub type Hooks = Arc<Mutex<Vec<DueHook>>>;

fn call(hooks: &Hooks) {
    let hooks: Vec<DueHook> = hooks.lock().unwrap_or_else(|p| p.into_inner()).clone();
    for h in hooks {
        h();
    }
}

/// Listens until `stop` fires, reconnecting as needed.
pub fn spawn(
    config: tokio_postgres::Config,
    tls: MakeRustlsConnect,
    hooks: Hooks,
    stop: CancellationToken,
) {
    tokio::spawn(async move {
        let mut first = true;
        loop {
            match config.connect(tls.clone()).await {
                Ok((client, mut connection)) => {
                    // The connection is driven here: its messages are the
                    // notifications.
                    let (up_tx, up_rx) = tokio::sync::oneshot::channel::<()>();
                    let listening = async {
                        let channel = match client
                            .query_one(concat!("SELECT ", channel_sql!()), &[])
                            .await
                            .and_then(|r| r.try_get::<_, String>(0))
                        {
                            Ok(c) => c,
                            Err(e) => {
                                tracing::warn!(error = %e, "postgres store: cannot name the channel");
                                return;
                            }
                        };
                        // An identifier of `hookgate_due_` and hex digits:
                        // nothing to quote.
                        if let Err(e) = client.batch_execute(&format!("LISTEN {channel}")).await {
                            tracing::warn!(error = %e, "postgres store: cannot LISTEN");
                            return;
                        }
                        let _ = up_tx.send(());
                        std::future::pending::<()>().await;
                    };
                    let driving = async {
                        loop {
                            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                                Some(Ok(AsyncMessage::Notification(_))) => call(&hooks),
                                Some(Ok(_)) => {}
                                Some(Err(e)) => {
                                    tracing::warn!(error = %e, "postgres store: listening connection failed");
                                    return;
                                }
                                None => return,
                            }
                        }
                    };
                    let missed = async {
                        if up_rx.await.is_ok() && !first {
                            // Whatever was announced while we were away.
                            call(&hooks);
                        }
                        std::future::pending::<()>().await;
                    };
                    tokio::select! {
                        () = listening => {}
                        () = driving => {}
                        () = missed => {}
                        () = stop.cancelled() => return,
                    }
                    first = false;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "postgres store: cannot connect to listen for due work");
                }
            }
            tokio::select! {
                () = tokio::time::sleep(RECONNECT) => {}
                () = stop.cancelled() => return,
            }
        }
    });
}
