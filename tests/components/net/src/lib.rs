//! Test component: a verifier that opens a TCP connection with the standard
//! library (`std::net` becomes `wasi:sockets` imports). The gateway links no
//! socket interface, so the component loads with traps in their place and
//! the call traps: a plugin's only network is the host's allow-listed `http`.
use hookgate_plugin_sdk::{self as sdk, Error, Request, Verdict, Verifier};

struct Net;

impl Verifier for Net {
    fn verify(_req: Request) -> Result<Verdict, Error> {
        match std::net::TcpStream::connect("127.0.0.1:9") {
            Ok(_) => Ok(Verdict::accept()),
            Err(e) => Err(Error::other(format!("connect failed: {e}"))),
        }
    }
}

sdk::export!(Net, stages: [verify]);
