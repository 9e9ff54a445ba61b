//! Latency / load client for `bench/api_bench.sh` (see BENCHMARKS.md).
//!
//! Talks to a running daemon over plain HTTP with reqwest (one keep-alive connection for the
//! sequential measurements, so the figures are server time + loopback + client parse, not
//! connection set-up). Every sub-command prints human-readable lines and `RESULT key=value`
//! lines that the script collects.
//!
//! ```text
//! api_bench seed         --url U --project P --count 1000      # EVS batch creates of 100, waits for SUCCESS
//! api_bench paths        --url U --project P --out FILE        # one GET path per volume (for wrk)
//! api_bench get-latency  --url U --project P [--warmup 500] [--samples 5000]
//! api_bench detail-latency --url U --project P [--warmup 200] [--samples 2000]
//! api_bench create-latency --url U --project P [--count 200]   # POST then tight poll until available
//! api_bench concurrent-create --url U --project P [--count 200] [--poll-ms 10]
//! api_bench throughput   --url U --project P [--conns 8] [--seconds 20]   # cross-check of wrk
//! api_bench mixed-load   --url U --project P [--clients 200] [--seconds 60] [--poll-ms 200]
//! ```
//!
//! `mixed-load` (issue 17's load test): each client owns its volumes and loops over create,
//! snapshot, clone, extend, attach (initialize + terminate connection), delete and list for the
//! given time, waiting for each job to end (polling with a pause, a deadline makes a stuck
//! status an error); then it deletes what it owns and the project must be empty. It fails on
//! any 5xx, any unexpected status and any stuck resource.
//!
//! Any sub-command exits non-zero on an unexpected HTTP status or a failed create.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Client, StatusCode};
use serde_json::{json, Value};

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

struct Args {
    cmd: String,
    url: String,
    project: String,
    opts: HashMap<String, String>,
}

impl Args {
    fn parse() -> Res<Args> {
        let mut it = std::env::args().skip(1);
        let cmd = it.next().ok_or("usage: api_bench COMMAND --url URL --project P [--key value]...")?;
        let mut opts = HashMap::new();
        while let Some(k) = it.next() {
            let k = k.strip_prefix("--").ok_or_else(|| format!("expected --option, got {k}"))?.to_string();
            let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
            opts.insert(k, v);
        }
        let url = opts.remove("url").ok_or("--url is required")?.trim_end_matches('/').to_string();
        let project = opts.remove("project").ok_or("--project is required")?;
        Ok(Args { cmd, url, project, opts })
    }
    fn num(&self, k: &str, default: u64) -> Res<u64> {
        match self.opts.get(k) {
            Some(v) => Ok(v.parse().map_err(|_| format!("--{k}: not a number: {v}"))?),
            None => Ok(default),
        }
    }
}

/// Nearest-rank percentile of sorted samples.
fn pct(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Print summary statistics (milliseconds) and the RESULT lines under `key`.
fn report(key: &str, what: &str, mut ms: Vec<f64>) {
    ms.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "{what}: n={} min={:.3} median={:.3} p90={:.3} p99={:.3} max={:.3} mean={:.3} (ms)",
        ms.len(),
        ms[0],
        pct(&ms, 50.0),
        pct(&ms, 90.0),
        pct(&ms, 99.0),
        ms[ms.len() - 1],
        mean
    );
    println!("RESULT {key}_n={}", ms.len());
    println!("RESULT {key}_median_ms={:.3}", pct(&ms, 50.0));
    println!("RESULT {key}_p90_ms={:.3}", pct(&ms, 90.0));
    println!("RESULT {key}_p99_ms={:.3}", pct(&ms, 99.0));
    println!("RESULT {key}_max_ms={:.3}", ms[ms.len() - 1]);
}

fn client(max_idle: usize) -> Res<Client> {
    Ok(Client::builder()
        .pool_max_idle_per_host(max_idle)
        .pool_idle_timeout(Duration::from_secs(300))
        .tcp_nodelay(true)
        .timeout(Duration::from_secs(120))
        .build()?)
}

async fn get_json(c: &Client, url: &str) -> Res<(StatusCode, Value)> {
    let r = c.get(url).send().await?;
    let st = r.status();
    let body = r.bytes().await?;
    let v = serde_json::from_slice(&body).unwrap_or(Value::Null);
    Ok((st, v))
}

/// All volume ids of the project (detail pages of 1000 with markers).
async fn all_ids(c: &Client, a: &Args) -> Res<Vec<String>> {
    let mut ids = Vec::new();
    let mut marker: Option<String> = None;
    loop {
        let mut url = format!("{}/v3/{}/volumes?limit=1000", a.url, a.project);
        if let Some(m) = &marker {
            url.push_str(&format!("&marker={m}"));
        }
        let (st, v) = get_json(c, &url).await?;
        if !st.is_success() {
            return Err(format!("GET {url}: {st} {v}").into());
        }
        let page: Vec<String> = v["volumes"]
            .as_array()
            .ok_or("no volumes array")?
            .iter()
            .filter_map(|x| x["id"].as_str().map(String::from))
            .collect();
        if page.is_empty() {
            break;
        }
        marker = page.last().cloned();
        ids.extend(page);
        if v.get("volumes_links").is_none() {
            break;
        }
    }
    Ok(ids)
}

/// EVS batch creates of up to 100 until `count` volumes exist; waits for each job's SUCCESS.
async fn seed(a: &Args) -> Res<()> {
    let c = client(4)?;
    let count = a.num("count", 1000)?;
    let existing = all_ids(&c, a).await?.len() as u64;
    let mut left = count.saturating_sub(existing);
    let mut batch_ms = Vec::new();
    let t_all = Instant::now();
    let mut n = 0;
    while left > 0 {
        let k = left.min(100);
        let t = Instant::now();
        let body = json!({"volume": {"availability_zone": "nova", "volume_type": "SSD", "size": 1,
                                      "count": k, "name": format!("seed{n}")}});
        let r = c.post(format!("{}/v2.1/{}/cloudvolumes", a.url, a.project)).json(&body).send().await?;
        let st = r.status();
        let v: Value = r.json().await?;
        if !st.is_success() {
            return Err(format!("batch create: {st} {v}").into());
        }
        let job = v["job_id"].as_str().ok_or("no job_id")?.to_string();
        loop {
            let (st, j) = get_json(&c, &format!("{}/v1/{}/jobs/{job}", a.url, a.project)).await?;
            match j["status"].as_str() {
                Some("SUCCESS") => break,
                Some("FAIL") => return Err(format!("batch job {job} failed: {j}").into()),
                _ if !st.is_success() => return Err(format!("job {job}: {st} {j}").into()),
                _ => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
        batch_ms.push(t.elapsed().as_secs_f64() * 1e3);
        left -= k;
        n += 1;
    }
    let total = all_ids(&c, a).await?.len();
    println!("seeded: {total} volumes in the project ({:.1} s)", t_all.elapsed().as_secs_f64());
    println!("RESULT volumes_after_seed={total}");
    if !batch_ms.is_empty() {
        report("batch100_to_success", "EVS batch create of 100 → job SUCCESS", batch_ms);
    }
    if (total as u64) < count {
        return Err(format!("only {total} volumes after seeding").into());
    }
    Ok(())
}

async fn paths(a: &Args) -> Res<()> {
    let c = client(1)?;
    let out = a.opts.get("out").ok_or("--out is required")?;
    let ids = all_ids(&c, a).await?;
    let text: String = ids.iter().map(|id| format!("/v3/{}/volumes/{id}\n", a.project)).collect();
    std::fs::write(out, text)?;
    println!("wrote {} paths to {out}", ids.len());
    Ok(())
}

/// Sequential GETs over one keep-alive connection; returns per-request ms (send → body read).
async fn timed_gets(c: &Client, urls: &[String], warmup: u64, samples: u64) -> Res<Vec<f64>> {
    let mut ms = Vec::with_capacity(samples as usize);
    for i in 0..(warmup + samples) {
        let url = &urls[(i as usize) % urls.len()];
        let t = Instant::now();
        let r = c.get(url).send().await?;
        let st = r.status();
        let body = r.bytes().await?;
        let dt = t.elapsed().as_secs_f64() * 1e3;
        if st != StatusCode::OK {
            return Err(format!("GET {url}: {st} {}", String::from_utf8_lossy(&body)).into());
        }
        if i >= warmup {
            ms.push(dt);
        }
    }
    Ok(ms)
}

/// A cheap deterministic shuffle (xorshift), so no rand crate is needed.
fn shuffle<T>(v: &mut [T], mut seed: u64) {
    for i in (1..v.len()).rev() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        v.swap(i, (seed % (i as u64 + 1)) as usize);
    }
}

async fn get_latency(a: &Args) -> Res<()> {
    let c = client(1)?;
    let mut ids = all_ids(&c, a).await?;
    shuffle(&mut ids, 0x9e3779b97f4a7c15);
    println!("GET /v3/{{p}}/volumes/{{id}} over {} volumes (random order)", ids.len());
    let urls: Vec<String> = ids.iter().map(|id| format!("{}/v3/{}/volumes/{id}", a.url, a.project)).collect();
    let ms = timed_gets(&c, &urls, a.num("warmup", 500)?, a.num("samples", 5000)?).await?;
    println!("RESULT volumes_in_project={}", ids.len());
    report("get", "GET volume", ms);
    Ok(())
}

async fn detail_latency(a: &Args) -> Res<()> {
    let c = client(1)?;
    let url = format!("{}/v3/{}/volumes/detail?limit=100", a.url, a.project);
    let (_, v) = get_json(&c, &url).await?;
    let n = v["volumes"].as_array().map(|x| x.len()).unwrap_or(0);
    if n != 100 {
        return Err(format!("detail?limit=100 returned {n} volumes").into());
    }
    let body_len = serde_json::to_vec(&v)?.len();
    println!("GET /v3/{{p}}/volumes/detail?limit=100: 100 volumes, ~{} KiB per response", body_len / 1024);
    let ms = timed_gets(&c, &[url], a.num("warmup", 200)?, a.num("samples", 2000)?).await?;
    report("detail", "GET volumes/detail?limit=100", ms);
    Ok(())
}

/// One create: POST, then poll the volume with no sleep until it leaves `creating`.
/// Returns (POST ms, create→available ms, polls) or an error message.
async fn create_one(c: &Client, a: &Args, name: &str, poll: Duration) -> Result<(f64, f64, u64), String> {
    let t = Instant::now();
    let r = c
        .post(format!("{}/v3/{}/volumes", a.url, a.project))
        .json(&json!({"volume": {"size": 1, "name": name}}))
        .send()
        .await
        .map_err(|e| format!("POST: {e}"))?;
    let st = r.status();
    let v: Value = r.json().await.map_err(|e| format!("POST body: {e}"))?;
    let t_post = t.elapsed().as_secs_f64() * 1e3;
    if st != StatusCode::ACCEPTED {
        return Err(format!("POST: {st} {v}"));
    }
    let id = v["volume"]["id"].as_str().ok_or("no volume id")?.to_string();
    let url = format!("{}/v3/{}/volumes/{id}", a.url, a.project);
    let mut polls = 0;
    loop {
        let (st, v) = get_json(c, &url).await.map_err(|e| format!("GET: {e}"))?;
        polls += 1;
        if st != StatusCode::OK {
            return Err(format!("GET {id}: {st} {v}"));
        }
        match v["volume"]["status"].as_str() {
            Some("available") => return Ok((t_post, t.elapsed().as_secs_f64() * 1e3, polls)),
            Some("creating") => {
                if t.elapsed() > Duration::from_secs(120) {
                    return Err(format!("{id} still creating after 120 s"));
                }
                if poll.is_zero() {
                    tokio::task::yield_now().await;
                } else {
                    tokio::time::sleep(poll).await;
                }
            }
            other => return Err(format!("{id} ended in status {other:?}")),
        }
    }
}

async fn create_latency(a: &Args) -> Res<()> {
    let c = client(1)?;
    let count = a.num("count", 200)?;
    let warmup = a.num("warmup", 10)?;
    let (mut post_ms, mut avail_ms, mut polls) = (Vec::new(), Vec::new(), 0);
    for i in 0..(warmup + count) {
        let (p, t, n) =
            create_one(&c, a, &format!("lat{i}"), Duration::ZERO).await.map_err(|e| format!("create {i}: {e}"))?;
        if i >= warmup {
            post_ms.push(p);
            avail_ms.push(t);
            polls += n;
        }
    }
    println!("sequential creates: {count} (+{warmup} warm-up), {:.1} polls per create", polls as f64 / count as f64);
    report("create_post", "POST /v3/{p}/volumes → 202", post_ms);
    report("create_available", "create → available (POST, then tight GET poll)", avail_ms);
    Ok(())
}

async fn concurrent_create(a: &Args) -> Res<()> {
    let count = a.num("count", 200)? as usize;
    // 200 tasks polling with no pause would measure how fast the daemon answers 200 pollers,
    // not how fast it creates: each task sleeps `--poll-ms` between polls (so ± that much).
    let poll = Duration::from_millis(a.num("poll-ms", 10)?);
    // One connection per create, all opened up front, so the POSTs really arrive together.
    let c = client(count)?;
    let c = Arc::new(c);
    let a = Arc::new(Args { cmd: a.cmd.clone(), url: a.url.clone(), project: a.project.clone(), opts: a.opts.clone() });
    let start = Arc::new(tokio::sync::Barrier::new(count));
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..count {
        let (c, a, start) = (c.clone(), a.clone(), start.clone());
        tasks.push(tokio::spawn(async move {
            start.wait().await;
            create_one(&c, &a, &format!("conc{i}"), poll).await
        }));
    }
    let (mut ok, mut failed, mut avail_ms, mut post_ms) = (0, 0, Vec::new(), Vec::new());
    for t in tasks {
        match t.await? {
            Ok((p, ms, _)) => {
                ok += 1;
                post_ms.push(p);
                avail_ms.push(ms);
            }
            Err(e) => {
                failed += 1;
                eprintln!("create failed: {e}");
            }
        }
    }
    let wall = t0.elapsed().as_secs_f64();
    println!(
        "{count} concurrent creates (polls every {} ms): {ok} available, {failed} failed, all done in {wall:.2} s",
        poll.as_millis()
    );
    println!("RESULT concurrent_creates={count}");
    println!("RESULT concurrent_failed={failed}");
    println!("RESULT concurrent_wall_s={wall:.3}");
    if !post_ms.is_empty() {
        report("concurrent_post", "concurrent POST → 202", post_ms);
        report("concurrent_available", "concurrent create → available", avail_ms);
    }
    if failed > 0 {
        return Err(format!("{failed} of {count} concurrent creates failed").into());
    }
    Ok(())
}

/// Closed-loop GETs on `conns` connections for `seconds` (a cross-check of wrk).
async fn throughput(a: &Args) -> Res<()> {
    let conns = a.num("conns", 8)? as usize;
    let secs = a.num("seconds", 20)?;
    let c0 = client(1)?;
    let ids = all_ids(&c0, a).await?;
    let urls: Arc<Vec<String>> =
        Arc::new(ids.iter().map(|id| format!("{}/v3/{}/volumes/{id}", a.url, a.project)).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for k in 0..conns {
        // A client per task: a connection of its own.
        let c = client(1)?;
        let (urls, stop, done, errors) = (urls.clone(), stop.clone(), done.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut i = k * 997;
            while !stop.load(Ordering::Relaxed) {
                let url = &urls[i % urls.len()];
                i += 1;
                let ok = match c.get(url).send().await {
                    Ok(r) if r.status() == StatusCode::OK => r.bytes().await.is_ok(),
                    _ => false,
                };
                if ok {
                    done.fetch_add(1, Ordering::Relaxed);
                } else {
                    errors.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs(2)).await; // warm-up
    let (n0, t0) = (done.load(Ordering::Relaxed), Instant::now());
    tokio::time::sleep(Duration::from_secs(secs)).await;
    let (n1, dt) = (done.load(Ordering::Relaxed), t0.elapsed().as_secs_f64());
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    let rps = (n1 - n0) as f64 / dt;
    println!("own client: {conns} connections, {secs} s: {rps:.0} GET/s, {} errors", errors.load(Ordering::Relaxed));
    println!("RESULT own_rps={rps:.0}");
    println!("RESULT own_errors={}", errors.load(Ordering::Relaxed));
    Ok(())
}

/// One client's view of the mixed load: its latencies by operation, and what went wrong.
#[derive(Default)]
struct LoadStats {
    /// Request latency (ms) by operation.
    latency: HashMap<&'static str, Vec<f64>>,
    /// Time (ms) from the request to the resource being `available` (or gone), by operation.
    settle: HashMap<&'static str, Vec<f64>>,
    /// Responses with a 5xx status.
    server_errors: u64,
    /// Other statuses the operation does not expect, with the body.
    unexpected: Vec<String>,
    /// Resources whose status never settled before the deadline.
    stuck: Vec<String>,
}

struct LoadClient {
    c: Client,
    base: String,
    poll: Duration,
    deadline: Duration,
    stats: LoadStats,
}

impl LoadClient {
    /// Send one request, timing it under `op` and checking its status against `want`.
    async fn call(
        &mut self,
        op: &'static str,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
        want: &[u16],
    ) -> Option<Value> {
        let t = Instant::now();
        let mut rb = self.c.request(method.clone(), format!("{}{path}", self.base));
        if let Some(b) = body {
            rb = rb.json(&b);
        }
        let r = rb.send().await;
        let (st, text) = match r {
            Ok(r) => {
                let st = r.status().as_u16();
                (st, r.text().await.unwrap_or_default())
            }
            Err(e) => {
                self.stats.unexpected.push(format!("{op} {method} {path}: {e}"));
                return None;
            }
        };
        self.stats.latency.entry(op).or_default().push(t.elapsed().as_secs_f64() * 1e3);
        if st >= 500 {
            self.stats.server_errors += 1;
        }
        if !want.contains(&st) {
            self.stats.unexpected.push(format!("{op} {method} {path}: {st} {}", &text[..text.len().min(300)]));
            return None;
        }
        Some(serde_json::from_str(&text).unwrap_or(Value::Null))
    }

    /// Poll `path` until its `key` object's status is one of `want` (or, with `gone`, 404).
    async fn settle(&mut self, op: &'static str, path: &str, key: &str, want: &[&str], started: Instant) -> bool {
        loop {
            let r = self.c.get(format!("{}{path}", self.base)).send().await;
            if let Ok(r) = r {
                let st = r.status().as_u16();
                if st >= 500 {
                    self.stats.server_errors += 1;
                }
                if st == 404 && want.contains(&"gone") {
                    self.stats.settle.entry(op).or_default().push(started.elapsed().as_secs_f64() * 1e3);
                    return true;
                }
                let v: Value = r.json().await.unwrap_or(Value::Null);
                let status = v[key]["status"].as_str().unwrap_or("");
                if want.contains(&status) {
                    self.stats.settle.entry(op).or_default().push(started.elapsed().as_secs_f64() * 1e3);
                    return true;
                }
                if status.starts_with("error") {
                    self.stats.unexpected.push(format!("{op}: {path} went to {status}"));
                    return false;
                }
            }
            if started.elapsed() > self.deadline {
                self.stats.stuck.push(format!("{op}: {path} never became {want:?}"));
                return false;
            }
            tokio::time::sleep(self.poll).await;
        }
    }

    async fn create(&mut self, p: &str, op: &'static str, body: Value) -> Option<(String, i64)> {
        let t = Instant::now();
        let v = self.call(op, reqwest::Method::POST, &format!("/v3/{p}/volumes"), Some(body), &[202]).await?;
        let id = v["volume"]["id"].as_str()?.to_string();
        let size = v["volume"]["size"].as_i64().unwrap_or(1);
        self.settle(op, &format!("/v3/{p}/volumes/{id}"), "volume", &["available"], t).await.then_some((id, size))
    }
}

async fn mixed_client(a: Arc<(String, String)>, k: u64, secs: u64, poll: Duration) -> LoadStats {
    let (base, p) = (&a.0, &a.1);
    let mut lc = LoadClient {
        c: match client(4) {
            Ok(c) => c,
            Err(e) => return LoadStats { unexpected: vec![format!("client: {e}")], ..Default::default() },
        },
        base: base.clone(),
        poll,
        deadline: Duration::from_secs(120),
        stats: LoadStats::default(),
    };
    // (volume id, size) of the volumes this client owns.
    let mut mine: Vec<(String, i64)> = Vec::new();
    let end = Instant::now() + Duration::from_secs(secs);
    let mut rng = k.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    while Instant::now() < end {
        let roll = next() % 100;
        let pick = if mine.is_empty() { None } else { Some((next() % mine.len() as u64) as usize) };
        match (roll, pick) {
            (_, None) | (0..=14, _) if mine.len() < 3 => {
                let body = json!({"volume": {"size": 1, "name": format!("load-{k}")}});
                if let Some(v) = lc.create(p, "create", body).await {
                    mine.push(v);
                }
            }
            (15..=24, Some(i)) => {
                let t = Instant::now();
                let body = json!({"snapshot": {"volume_id": mine[i].0, "name": format!("load-{k}")}});
                let path = format!("/v3/{p}/snapshots");
                if let Some(v) = lc.call("snapshot", reqwest::Method::POST, &path, Some(body), &[202]).await {
                    if let Some(sid) = v["snapshot"]["id"].as_str() {
                        let sp = format!("/v3/{p}/snapshots/{sid}");
                        lc.settle("snapshot", &sp, "snapshot", &["available"], t).await;
                    }
                }
            }
            (25..=34, Some(i)) if mine.len() < 3 => {
                let body = json!({"volume": {"size": mine[i].1, "source_volid": mine[i].0}});
                if let Some(v) = lc.create(p, "clone", body).await {
                    mine.push(v);
                }
            }
            (35..=44, Some(i)) if mine[i].1 < 4 => {
                let t = Instant::now();
                let (id, size) = mine[i].clone();
                let path = format!("/v3/{p}/volumes/{id}/action");
                let body = json!({"os-extend": {"new_size": size + 1}});
                if lc.call("extend", reqwest::Method::POST, &path, Some(body), &[202]).await.is_some() {
                    let vp = format!("/v3/{p}/volumes/{id}");
                    if lc.settle("extend", &vp, "volume", &["available"], t).await {
                        mine[i].1 = size + 1;
                    }
                }
            }
            (45..=54, Some(i)) => {
                let id = mine[i].0.clone();
                let path = format!("/v3/{p}/volumes/{id}/action");
                let connector = json!({"connector": {"host": format!("load-host-{k}")}});
                let init = json!({"os-initialize_connection": connector.clone()});
                if lc.call("attach", reqwest::Method::POST, &path, Some(init), &[200]).await.is_some() {
                    let term = json!({"os-terminate_connection": connector});
                    lc.call("detach", reqwest::Method::POST, &path, Some(term), &[202]).await;
                }
            }
            (55..=69, Some(i)) => {
                let t = Instant::now();
                let (id, _) = mine.swap_remove(i);
                let path = format!("/v3/{p}/volumes/{id}?cascade=true");
                if lc.call("delete", reqwest::Method::DELETE, &path, None, &[202]).await.is_some() {
                    lc.settle("delete", &format!("/v3/{p}/volumes/{id}"), "volume", &["gone"], t).await;
                }
            }
            _ => {
                let path = format!("/v3/{p}/volumes/detail?limit=20");
                lc.call("list", reqwest::Method::GET, &path, None, &[200]).await;
            }
        }
    }
    for (id, _) in mine {
        let t = Instant::now();
        let path = format!("/v3/{p}/volumes/{id}?cascade=true");
        if lc.call("delete", reqwest::Method::DELETE, &path, None, &[202]).await.is_some() {
            lc.settle("delete", &format!("/v3/{p}/volumes/{id}"), "volume", &["gone"], t).await;
        }
    }
    lc.stats
}

async fn mixed_load(a: &Args) -> Res<()> {
    let clients = a.num("clients", 200)?;
    let secs = a.num("seconds", 60)?;
    let poll = Duration::from_millis(a.num("poll-ms", 200)?);
    let shared = Arc::new((a.url.clone(), a.project.clone()));
    let t0 = Instant::now();
    let tasks: Vec<_> = (0..clients).map(|k| tokio::spawn(mixed_client(shared.clone(), k + 1, secs, poll))).collect();
    let mut all = LoadStats::default();
    for t in tasks {
        let s = t.await?;
        for (op, v) in s.latency {
            all.latency.entry(op).or_default().extend(v);
        }
        for (op, v) in s.settle {
            all.settle.entry(op).or_default().extend(v);
        }
        all.server_errors += s.server_errors;
        all.unexpected.extend(s.unexpected);
        all.stuck.extend(s.stuck);
    }
    let wall = t0.elapsed().as_secs_f64();
    let total: usize = all.latency.values().map(Vec::len).sum();
    println!("mixed load: {clients} clients, {secs} s (+ clean-up: {wall:.0} s in all), {total} requests");
    let mut ops: Vec<_> = all.latency.keys().copied().collect();
    ops.sort();
    for op in ops {
        report(&format!("mixed_{op}"), &format!("{op} request"), all.latency.remove(op).unwrap_or_default());
        if let Some(v) = all.settle.remove(op) {
            if !v.is_empty() {
                report(&format!("mixed_{op}_settle"), &format!("{op} to done"), v);
            }
        }
    }
    // Nothing may be left: every client deleted what it made.
    let c = client(1)?;
    let (_, v) = get_json(&c, &format!("{}/v3/{}/volumes", a.url, a.project)).await?;
    let left_v = v["volumes"].as_array().map(Vec::len).unwrap_or(usize::MAX);
    let (_, v) = get_json(&c, &format!("{}/v3/{}/snapshots", a.url, a.project)).await?;
    let left_s = v["snapshots"].as_array().map(Vec::len).unwrap_or(usize::MAX);
    println!("RESULT mixed_requests={total}");
    println!("RESULT mixed_rps={:.0}", total as f64 / wall);
    println!("RESULT mixed_5xx={}", all.server_errors);
    println!("RESULT mixed_unexpected={}", all.unexpected.len());
    println!("RESULT mixed_stuck={}", all.stuck.len());
    println!("RESULT mixed_left_volumes={left_v}");
    println!("RESULT mixed_left_snapshots={left_s}");
    for e in all.unexpected.iter().chain(all.stuck.iter()).take(20) {
        println!("problem: {e}");
    }
    if all.server_errors > 0 || !all.unexpected.is_empty() || !all.stuck.is_empty() || left_v + left_s > 0 {
        return Err(format!(
            "mixed load: {} 5xx, {} unexpected, {} stuck, {left_v} volumes and {left_s} snapshots left",
            all.server_errors,
            all.unexpected.len(),
            all.stuck.len()
        )
        .into());
    }
    Ok(())
}

fn main() -> Res<()> {
    let a = Args::parse()?;
    // Sequential measurements run on one thread (no cross-thread wake-ups in the timed path);
    // the concurrent ones on two worker threads (the machine has two cores, the daemon needs
    // them too).
    let rt = match a.cmd.as_str() {
        "concurrent-create" | "throughput" | "mixed-load" => {
            tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?
        }
        _ => tokio::runtime::Builder::new_current_thread().enable_all().build()?,
    };
    rt.block_on(async {
        match a.cmd.as_str() {
            "seed" => seed(&a).await,
            "paths" => paths(&a).await,
            "get-latency" => get_latency(&a).await,
            "detail-latency" => detail_latency(&a).await,
            "create-latency" => create_latency(&a).await,
            "concurrent-create" => concurrent_create(&a).await,
            "throughput" => throughput(&a).await,
            "mixed-load" => mixed_load(&a).await,
            other => Err(format!("unknown command {other}").into()),
        }
    })
}
