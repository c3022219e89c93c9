//! The floor under wxgate's benchmark figures: Pingora's own server with an
//! empty proxy (no token check, no header rules, no routes) in front of one
//! upstream, on one thread. `bench/run.sh` measures it as scenario `pingora`
//! beside wxgate and HAProxy; whatever wxgate costs above it is wxgate's.
//!
//! ```sh
//! cargo run --release --example pingora_floor -- 127.0.0.1:8090 127.0.0.1:9000
//! ```

use std::net::SocketAddr;
use std::process::ExitCode;

use async_trait::async_trait;
use pingora_core::server::configuration::ServerConf;
use pingora_core::server::Server;
use pingora_core::upstreams::peer::HttpPeer;
use pingora_proxy::{ProxyHttp, Session};

/// The same allocator as wxgate, so that the difference is the proxy's work.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Floor {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Floor {
    type CTX = ();

    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora_core::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (listen, upstream) = match args.as_slice() {
        [l, u] => match u.parse::<SocketAddr>() {
            Ok(u) => (l.clone(), u),
            Err(e) => {
                eprintln!("error: upstream {u:?}: {e}");
                return ExitCode::from(2);
            }
        },
        _ => {
            eprintln!("usage: pingora_floor LISTEN_ADDR UPSTREAM_ADDR");
            return ExitCode::from(2);
        }
    };
    let conf = ServerConf {
        threads: 1,
        ..Default::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut service = pingora_proxy::http_proxy_service(&server.configuration, Floor { upstream });
    service.add_tcp(&listen);
    server.add_service(service);
    server.run_forever()
}
