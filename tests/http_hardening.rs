//! HTTP hardening (issue 17.10 and 17.12): bodies over the limit answer 413 in each API's own
//! format and change nothing; `noauth` mode refuses what a web page in a local browser could
//! send (non-JSON bodies, foreign `Host` names: cross-site requests and DNS rebinding), and the
//! daemon refuses to start `noauth` on a network address unless the config says it is meant.

#[macro_use]
mod common;

use std::time::Duration;

use serde_json::json;

use common::{project, run_to_exit, Backend, Opts, TestServer};

backend_tests!(
    oversized_bodies_answer_413_in_each_api_format,
    noauth_refuses_cross_site_bodies_and_foreign_hosts,
    nul_and_control_characters_and_fractional_sizes_are_400,
    metadata_keys_per_resource_are_bounded,
);

/// A JSON body a little over the 2 MiB limit.
fn huge_body() -> String {
    json!({"volume": {"size": 1, "name": "x", "description": "d".repeat(3 << 20)}}).to_string()
}

async fn oversized_bodies_answer_413_in_each_api_format(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let r = api.post_raw(&format!("/v3/{p}/volumes"), &huge_body()).await.expect_fault(413, "overLimit");
    assert!(r.text.contains("too large"), "{}", r.text);
    srv.api().post_raw(&format!("/v2/{p}/cloudvolumes"), &huge_body()).await.expect_evs_error(413, "EVS.5413");
    let r = srv.api().post_raw("/identity/v3/auth/tokens", &huge_body()).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.body["error"]["code"], 413, "Keystone's error body: {}", r.text);
    // The server closes a connection whose body it did not read: ask on a new one.
    let list = srv.api().get(&format!("/v3/{p}/volumes")).await.expect(200);
    assert_eq!(list.body["volumes"], json!([]), "a refused body created something: {}", list.text);
}

async fn noauth_refuses_cross_site_bodies_and_foreign_hosts(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let base = srv.base_url();
    let port = base.rsplit(':').next().expect("port").to_string();
    let client = reqwest::Client::new();
    let url = format!("{base}/v3/{p}/volumes");
    let body = r#"{"volume": {"size": 1}}"#;
    // What a cross-site form or a simple fetch() can send: text/plain, form, or no type at all.
    for ct in [Some("text/plain"), Some("application/x-www-form-urlencoded"), Some("multipart/form-data"), None] {
        let mut rb = client.post(&url).body(body);
        if let Some(ct) = ct {
            rb = rb.header("Content-Type", ct);
        }
        let r = rb.send().await.expect("send");
        assert_eq!(r.status().as_u16(), 415, "Content-Type {ct:?}");
        let v: serde_json::Value = r.json().await.expect("json body");
        assert_eq!(v["badMediaType"]["code"], 415, "{v}");
    }
    let r = client.post(&url).header("Content-Type", "application/json; charset=UTF-8").body(body).send().await;
    assert_eq!(r.expect("send").status().as_u16(), 202, "JSON with a charset is JSON");
    // DNS rebinding: a page on evil.example resolving to 127.0.0.1 still sends its own name.
    for (host, want) in [
        ("evil.example".to_string(), 403),
        (format!("evil.example:{port}"), 403),
        (format!("localhost:{port}"), 200),
        (format!("127.0.0.1:{port}"), 200),
        (format!("[::1]:{port}"), 200),
    ] {
        let r = client.get(&url).header("Host", &host).send().await.expect("send");
        assert_eq!(r.status().as_u16(), want, "Host {host}");
    }
    let r = client.post(&url).header("Host", "evil.example").json(&json!({"volume": {"size": 1}})).send().await;
    assert_eq!(r.expect("send").status().as_u16(), 403);
    let list = api.get(&format!("/v3/{p}/volumes")).await.expect(200);
    assert_eq!(list.body["volumes"].as_array().map(Vec::len), Some(1), "only the JSON create may have landed");
}

#[test]
fn noauth_on_a_network_address_needs_explicit_consent() {
    let srv = TestServer::prepare(
        Backend::Sqlite,
        Opts { env: vec![("CINDERBLOCK_LISTEN".into(), "0.0.0.0:0".into())], ..Opts::default() },
    );
    let (status, out, err) = run_to_exit(srv.command(&["serve"]), Duration::from_secs(30));
    assert!(!status.success(), "noauth started on 0.0.0.0:\n{out}");
    assert!(err.contains("allow_noauth_on_network"), "the refusal must say how to proceed: {err}");
    assert!(!out.contains("listening on"), "{out}");

    let srv = TestServer::start(
        Backend::Sqlite,
        Opts {
            env: vec![
                ("CINDERBLOCK_LISTEN".into(), "0.0.0.0:0".into()),
                ("CINDERBLOCK_AUTH__ALLOW_NOAUTH_ON_NETWORK".into(), "true".into()),
            ],
            ..Opts::default()
        },
    );
    assert!(srv.is_running(), "with consent it serves");
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async { srv.api().get(&format!("/v3/{}/volumes", project())).await.expect(200) });
}

/// Issue 17.12: a NUL character anywhere (body, query, path) is a clean 400 on both databases
/// (PostgreSQL cannot store one: it was a 500), control characters in names are refused, and
/// `os-extend` refuses a size that is not an integer; none of these changes anything.
async fn nul_and_control_characters_and_fractional_sizes_are_400(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let id = common::s(&api.cinder_create_available(&p, json!({"size": 1, "name": "keep"})).await, "id");
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "name": "a\u{0}b"}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "name": "bell\u{7}"}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "metadata": {"k\u{0}": "v"}}}))
        .await
        .expect_fault(400, "badRequest");
    api.post(
        &format!("/v2/{p}/cloudvolumes"),
        json!({"volume": {"size": 1, "availability_zone": "nova", "volume_type": "SSD", "name": "n\u{0}"}}),
    )
    .await
    .expect_evs_error(400, "EVS.5400");
    api.put(&format!("/v3/{p}/volumes/{id}"), json!({"volume": {"description": "x\u{0}"}}))
        .await
        .expect_fault(400, "badRequest");
    api.get(&format!("/v3/{p}/volumes?name=a%00b")).await.expect_fault(400, "badRequest");
    api.get(&format!("/v3/{p}/volumes/{id}%00")).await.expect_fault(400, "badRequest");
    api.get(&format!("/v2/{p}/cloudvolumes/{id}%00")).await.expect_evs_error(400, "EVS.5400");
    let r = api
        .post(
            "/identity/v3/auth/tokens",
            json!({"auth": {"identity": {"methods": ["password"], "password": {"user": {"name": "x\u{0}", "password": "p", "domain": {"id": "default"}}}}}}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    for size in [json!(1.5), json!("1.5"), json!(true)] {
        api.post(&format!("/v3/{p}/volumes/{id}/action"), json!({"os-extend": {"new_size": size}}))
            .await
            .expect_fault(400, "badRequest");
    }
    let v = api.get(&format!("/v3/{p}/volumes/{id}")).await.expect(200).body["volume"].clone();
    assert_eq!(
        (v["size"].as_i64(), v["status"].as_str(), v["description"].as_str()),
        (Some(1), Some("available"), None)
    );
    let list = api.get(&format!("/v3/{p}/volumes")).await.expect(200);
    assert_eq!(list.body["volumes"].as_array().map(Vec::len), Some(1), "{}", list.text);
}

/// Issue 17.9: at most 128 metadata keys per volume or snapshot, whether given at once or
/// merged in; a refused change changes nothing.
async fn metadata_keys_per_resource_are_bounded(b: Backend) {
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    let keys = |n: usize, prefix: &str| -> serde_json::Value {
        (0..n).map(|i| (format!("{prefix}{i}"), json!("v"))).collect::<serde_json::Map<_, _>>().into()
    };
    api.post(&format!("/v3/{p}/volumes"), json!({"volume": {"size": 1, "metadata": keys(129, "k")}}))
        .await
        .expect_fault(400, "badRequest");
    let v = api.cinder_create_available(&p, json!({"size": 1, "metadata": keys(128, "k")})).await;
    let id = common::s(&v, "id");
    let r = api.post(&format!("/v3/{p}/volumes/{id}/metadata"), json!({"metadata": keys(1, "extra")})).await;
    let r = r.expect_fault(400, "badRequest");
    assert!(r.text.contains("at most 128"), "{}", r.text);
    let m = api.get(&format!("/v3/{p}/volumes/{id}/metadata")).await.expect(200);
    assert_eq!(m.body["metadata"].as_object().map(|o| o.len()), Some(128));
    // Replacing the whole set with another of 128 is fine.
    api.put(&format!("/v3/{p}/volumes/{id}/metadata"), json!({"metadata": keys(128, "n")})).await.expect(200);
    let snap = api
        .post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": id, "metadata": keys(129, "s")}}))
        .await;
    snap.expect_fault(400, "badRequest");
    let list = api.get(&format!("/v3/{p}/snapshots")).await.expect(200);
    assert_eq!(list.body["snapshots"], json!([]), "{}", list.text);
}

/// Read from `s` until the peer closes; returns what arrived, or panics after `within`.
fn read_until_closed(s: &mut std::net::TcpStream, within: Duration) -> String {
    use std::io::Read;
    let start = std::time::Instant::now();
    s.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return String::from_utf8_lossy(&got).to_string(),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {
                return String::from_utf8_lossy(&got).to_string()
            }
            Err(e) => panic!("read: {e}"),
        }
        assert!(
            start.elapsed() < within,
            "the server kept the connection open for {within:?}; got {:?}",
            String::from_utf8_lossy(&got)
        );
    }
}

fn addr_of(srv: &TestServer) -> String {
    srv.base_url().trim_start_matches("http://").to_string()
}

/// Issue 17.6: a connection that sends nothing, headers that never end, a body that never
/// ends, and a kept-alive connection left idle are all closed after the configured timeouts,
/// while other clients are served.
#[test]
fn idle_and_slow_clients_are_cut_off() {
    use std::io::Write;
    let srv = TestServer::start(
        Backend::Sqlite,
        Opts {
            env: vec![
                ("CINDERBLOCK_HTTP__HEADER_READ_TIMEOUT_SECONDS".into(), "1".into()),
                ("CINDERBLOCK_HTTP__BODY_READ_TIMEOUT_SECONDS".into(), "1".into()),
            ],
            ..Opts::default()
        },
    );
    let addr = addr_of(&srv);
    let within = Duration::from_secs(10);
    // Silent.
    let mut silent = std::net::TcpStream::connect(&addr).expect("connect");
    // Headers that never end.
    let mut slow_headers = std::net::TcpStream::connect(&addr).expect("connect");
    slow_headers.write_all(b"GET /v3 HTTP/1.1\r\nHost: localhost\r\n").expect("write");
    // A body that never ends.
    let p = project();
    let mut slow_body = std::net::TcpStream::connect(&addr).expect("connect");
    write!(
        slow_body,
        "POST /v3/{p}/volumes HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"volume\""
    )
    .expect("write");
    // Kept alive after one answered request.
    let mut kept = std::net::TcpStream::connect(&addr).expect("connect");
    kept.write_all(b"GET /v3 HTTP/1.1\r\nHost: localhost\r\n\r\n").expect("write");

    read_until_closed(&mut silent, within);
    read_until_closed(&mut slow_headers, within);
    let answer = read_until_closed(&mut slow_body, within);
    assert!(answer.starts_with("HTTP/1.1 408"), "a slow body gets 408: {answer:?}");
    let answer = read_until_closed(&mut kept, within);
    assert!(answer.starts_with("HTTP/1.1 200"), "the kept-alive request was answered first: {answer:?}");
    // Nothing was created; the daemon still answers.
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let list = rt.block_on(async { srv.api().get(&format!("/v3/{p}/volumes")).await.expect(200) });
    assert_eq!(list.body["volumes"], json!([]));
}

/// Issue 17.6: beyond `http.max_connections` a new connection gets a JSON 503 with
/// `Retry-After` and is closed; once a slot frees, requests are served again.
#[test]
fn connections_over_the_cap_get_503() {
    use std::io::Write;
    let srv = TestServer::start(
        Backend::Sqlite,
        Opts { env: vec![("CINDERBLOCK_HTTP__MAX_CONNECTIONS".into(), "4".into())], ..Opts::default() },
    );
    let addr = addr_of(&srv);
    let mut idle: Vec<std::net::TcpStream> =
        (0..4).map(|_| std::net::TcpStream::connect(&addr).expect("connect")).collect();
    // The accept loop takes them in order; poll until the fifth is refused.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let refused = loop {
        let mut c = std::net::TcpStream::connect(&addr).expect("connect");
        let _ = c.write_all(b"GET /v3 HTTP/1.1\r\nHost: localhost\r\n\r\n");
        let answer = read_until_closed(&mut c, Duration::from_secs(10));
        if answer.starts_with("HTTP/1.1 503") {
            break answer;
        }
        assert!(std::time::Instant::now() < deadline, "never refused: {answer:?}");
    };
    assert!(refused.contains("Retry-After: 1"), "{refused}");
    let body = refused.split("\r\n\r\n").nth(1).unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(body).expect("JSON body");
    assert_eq!(v["computeFault"]["code"], 503);
    // Free one slot: requests get through again.
    drop(idle.pop());
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let r = rt.block_on(async { srv.api().request(reqwest::Method::GET, "/v3", &[], None).await });
        if r.status == 200 {
            break;
        }
        assert_eq!(r.status, 503, "{}", r.text);
        assert!(std::time::Instant::now() < deadline, "no slot came back");
        std::thread::sleep(Duration::from_millis(50));
    }
    drop(idle);
}
