#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use super::*;

/// A server answering each request head with the next of `answers` (the
/// last one again when they run out), closing the connection after the
/// answers listed in `close_after` (by request number, from 0). It records
/// each request head and counts connections.
struct Server {
    addr: std::net::SocketAddr,
    heads: Arc<Mutex<Vec<String>>>,
    conns: Arc<AtomicUsize>,
}

impl Server {
    async fn start(answers: Vec<Vec<u8>>, close_after: Vec<usize>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let conns = Arc::new(AtomicUsize::new(0));
        let (h, c) = (heads.clone(), conns.clone());
        let answers = Arc::new(answers);
        let close_after = Arc::new(close_after);
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (h, answers, close_after) = (h.clone(), answers.clone(), close_after.clone());
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    loop {
                        let mut chunk = [0u8; 4096];
                        let end = loop {
                            if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                                break i + 4;
                            }
                            match s.read(&mut chunk).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => buf.extend_from_slice(&chunk[..n]),
                            }
                        };
                        let head = String::from_utf8_lossy(&buf[..end]).to_string();
                        buf.drain(..end);
                        let n = {
                            let mut heads = h.lock().unwrap();
                            heads.push(head);
                            heads.len() - 1
                        };
                        let answer = answers.get(n).or(answers.last()).unwrap();
                        if s.write_all(answer).await.is_err() {
                            return;
                        }
                        if close_after.contains(&n) {
                            return;
                        }
                    }
                });
            }
        });
        Self { addr, heads, conns }
    }

    fn client(&self) -> Lean {
        let url = reqwest::Url::parse(&format!(
            "http://{}/sns/jscode2session?appid=wx1&secret=s%2Bcret",
            self.addr
        ))
        .unwrap();
        Lean::for_url(&url, Duration::from_secs(2))
            .unwrap()
            .unwrap()
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

const OK: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 14\r\n\r\n{\"openid\":\"o\"}";

#[tokio::test]
async fn the_request_is_what_reqwest_sent_and_connections_are_kept() {
    let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok".to_vec();
    let server2 = Server::start(vec![ok], vec![]).await;
    let lean2 = server2.client();
    for code in ["c 1+&=", "c2"] {
        assert_eq!(lean2.fetch(code, 1024).await.unwrap(), b"ok");
    }
    assert_eq!(
        server2.conns.load(Ordering::SeqCst),
        1,
        "one kept connection"
    );
    let heads = server2.heads();
    assert_eq!(
        heads[0],
        format!(
            "GET /sns/jscode2session?appid=wx1&secret=s%2Bcret&js_code=c+1%2B%26%3D&grant_type=authorization_code HTTP/1.1\r\nHost: {}\r\nUser-Agent: wxgate/{}\r\nAccept: */*\r\n\r\n",
            server2.addr,
            env!("CARGO_PKG_VERSION")
        )
    );
}

#[tokio::test]
async fn chunked_and_until_close_answers_are_read_whole() {
    let chunked =
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
            .to_vec();
    let server = Server::start(vec![chunked.clone(), chunked], vec![]).await;
    let lean = server.client();
    assert_eq!(lean.fetch("a", 1024).await.unwrap(), b"hello world");
    assert_eq!(lean.fetch("b", 1024).await.unwrap(), b"hello world");
    assert_eq!(server.conns.load(Ordering::SeqCst), 1);

    let close = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil close".to_vec();
    let server = Server::start(vec![close], vec![0, 1]).await;
    let lean = server.client();
    assert_eq!(lean.fetch("a", 1024).await.unwrap(), b"until close");
    assert_eq!(lean.fetch("b", 1024).await.unwrap(), b"until close");
    assert_eq!(server.conns.load(Ordering::SeqCst), 2, "not kept");
}

#[tokio::test]
async fn a_kept_connection_the_server_closed_is_not_used_again() {
    // The server closes after its first answer without saying so.
    let server = Server::start(vec![OK.to_vec()], vec![0]).await;
    let lean = server.client();
    assert!(lean.fetch("a", 1024).await.is_ok());
    // Wait until the close has reached the kept connection.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while lean.quiet_kept() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the close never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert!(lean.fetch("b", 1024).await.is_ok());
    assert_eq!(server.conns.load(Ordering::SeqCst), 2);
    assert_eq!(server.heads().len(), 2, "each code reached WeChat once");
}

#[tokio::test]
async fn a_request_written_is_never_sent_again() {
    // The second request is read, then the connection closed unanswered:
    // WeChat may have spent that code.
    let server = Server::start(vec![OK.to_vec(), Vec::new()], vec![1]).await;
    let lean = server.client();
    assert!(lean.fetch("a", 1024).await.is_ok());
    let e = lean.fetch("b", 1024).await.unwrap_err();
    assert!(matches!(e, WechatError::Transport(_)), "{e:?}");
    assert_eq!(server.heads().len(), 2, "the code was not sent twice");
    assert_eq!(server.conns.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn bytes_after_an_answer_keep_its_connection_out_of_use() {
    // The body comes in a second write, with a stray byte after it.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((mut s, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    let _ = s
                        .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n")
                        .await;
                    let _ = s.flush().await;
                    tokio::task::yield_now().await;
                    let _ = s.write_all(b"okX").await;
                }
            });
        }
    });
    let url = reqwest::Url::parse(&format!("http://{addr}/sns/jscode2session?appid=a")).unwrap();
    let lean = Lean::for_url(&url, Duration::from_secs(2))
        .unwrap()
        .unwrap();
    assert_eq!(lean.fetch("a", 1024).await.unwrap(), b"ok");
    assert_eq!(lean.fetch("b", 1024).await.unwrap(), b"ok");
    assert_eq!(
        conns.load(Ordering::SeqCst),
        2,
        "the first connection was not kept"
    );
}

#[tokio::test]
async fn bad_answers_are_errors_that_name_no_secret() {
    type Check = fn(&WechatError) -> bool;
    let cases: Vec<(&[u8], Check)> = vec![
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 0\r\n\r\n", |e| {
            matches!(e, WechatError::HttpStatus(500))
        }),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5000\r\n\r\n", |e| {
            matches!(e, WechatError::BadReply(_))
        }),
        (b"NOT HTTP\r\n\r\n", |e| {
            matches!(e, WechatError::BadReply(_))
        }),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n", |e| {
            matches!(e, WechatError::BadReply(_))
        }),
        (
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
            |e| matches!(e, WechatError::BadReply(_)),
        ),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort", |e| {
            matches!(e, WechatError::Transport(_))
        }),
    ];
    for (answer, check) in cases {
        let server = Server::start(vec![answer.to_vec()], vec![0]).await;
        let e = server.client().fetch("a", 1024).await.unwrap_err();
        assert!(check(&e), "{}: {e:?}", String::from_utf8_lossy(answer));
        assert!(!format!("{e} {e:?}").contains("cret"), "{e:?}");
    }
    // Nothing listens: a transport error, without the URL.
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
        l.local_addr().unwrap()
    };
    let url =
        reqwest::Url::parse(&format!("http://{dead}/sns/jscode2session?secret=s%2Bcret")).unwrap();
    let lean = Lean::for_url(&url, Duration::from_secs(1))
        .unwrap()
        .unwrap();
    let e = lean.fetch("a", 1024).await.unwrap_err();
    assert!(matches!(e, WechatError::Transport(_)), "{e:?}");
    assert!(!format!("{e} {e:?}").contains("cret"), "{e:?}");
}

#[tokio::test]
async fn https_is_spoken_with_the_roots_given() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cert = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let cert_der = cert.cert.der().clone();
    let key = rustls::pki_types::PrivateKeyDer::try_from(cert.signing_key.serialize_der()).unwrap();
    let server_config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(vec![cert_der.clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let conns = Arc::new(AtomicUsize::new(0));
    let counted = conns.clone();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut s) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = Vec::new();
                let mut chunk = [0u8; 4096];
                loop {
                    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
                        match s.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    if s.write_all(OK).await.is_err() || s.flush().await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    let url = reqwest::Url::parse(&format!(
        "https://localhost:{port}/sns/jscode2session?appid=wx1&secret=s"
    ))
    .unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert_der).unwrap();
    let config = rustls::ClientConfig::builder()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let lean = Lean::with_tls(&url, Duration::from_secs(2), Some(config)).unwrap();
    assert_eq!(lean.fetch("a", 1024).await.unwrap(), b"{\"openid\":\"o\"}");
    assert_eq!(lean.fetch("b", 1024).await.unwrap(), b"{\"openid\":\"o\"}");
    assert_eq!(conns.load(Ordering::SeqCst), 1, "one kept TLS connection");

    // The platform's roots do not know this certificate: refused.
    let platform = Lean::for_url(&url, Duration::from_secs(2))
        .unwrap()
        .unwrap();
    let e = platform.fetch("c", 1024).await.unwrap_err();
    assert!(
        matches!(e, WechatError::Transport(ref m) if m.starts_with("TLS")),
        "{e:?}"
    );
}
