//! Fuzzing the HTTP surface (issue 17, "Fuzzing"): a seeded generator throws random JSON
//! bodies (nested, wrong types, huge and negative numbers, NUL and control characters, unicode,
//! the field and action names the routes know), raw garbage and random query strings at every
//! route of a live daemon, on real ids and random ones. No answer may be a 5xx, every error must
//! be JSON, and the daemon must stay up. The seed is printed; `CINDERBLOCK_FUZZ_SEED` replays a
//! run and `CINDERBLOCK_FUZZ_ROUNDS` makes it longer (bounded by default to keep CI short).

#[macro_use]
mod common;

use serde_json::{json, Map, Value};

use common::{project, s, Backend, Opts, TestServer};

backend_tests!(random_requests_never_get_a_server_error);

/// Field names the routes read, so random bodies reach past the first "unknown key" check.
const KEYS: &[&str] = &[
    "volume",
    "snapshot",
    "volume_type",
    "qos_specs",
    "quota_set",
    "quota_class_set",
    "metadata",
    "meta",
    "name",
    "description",
    "display_name",
    "size",
    "new_size",
    "availability_zone",
    "snapshot_id",
    "source_volid",
    "volume_id",
    "imageRef",
    "multiattach",
    "bootable",
    "readonly",
    "force",
    "status",
    "attach_status",
    "migration_status",
    "host",
    "connector",
    "mode",
    "instance_uuid",
    "mountpoint",
    "extra_specs",
    "is_public",
    "os-volume-type-access:is_public",
    "keys",
    "specs",
    "consumer",
    "project",
    "gigabytes",
    "volumes",
    "snapshots",
    "per_volume_gigabytes",
    "count",
    "tags",
    "key",
    "value",
    "new_type",
    "migration_policy",
    "group",
    "group_type",
    "group_types",
    "volume_types",
    "add_volumes",
    "remove_volumes",
    "group_snapshot",
    "attachment",
    "transfer",
    "auth_key",
    "volume_backend_name",
    "os-extend",
    "os-reset_status",
    "os-force_delete",
    "os-attach",
    "os-detach",
    "os-reserve",
    "os-unreserve",
    "os-begin_detaching",
    "os-roll_detaching",
    "os-initialize_connection",
    "os-terminate_connection",
    "os-retype",
    "os-migrate_volume",
    "os-update_readonly_flag",
    "os-set_bootable",
    "os-update_snapshot_status",
    "os-force_detach",
    "revert",
    "rollback",
    "addProjectAccess",
    "removeProjectAccess",
    "create-from-src",
    "delete",
    "reset_status",
    "enable_replication",
    "bssParam",
    "OS-SCH-HNT:scheduler_hints",
    "server_id",
    "volume_ids",
    "disabled_reason",
    "binary",
    "cascade",
    "progress",
    "provider",
    "control_location",
    "cipher",
    "key_size",
    "backend",
    "limit",
    "marker",
];

const QUERY_KEYS: &[&str] = &[
    "limit",
    "marker",
    "offset",
    "sort",
    "sort_key",
    "sort_dir",
    "name",
    "status",
    "metadata",
    "all_tenants",
    "with_count",
    "availability_zone",
    "volume_type",
    "volume_id",
    "project_id",
    "changes-since",
    "is_public",
    "usage",
    "detail",
    "host",
    "service",
    "binary",
    "resource",
    "id",
    "tags",
    "not-tags",
    "server_id",
    "enterprise_project_id",
    "dedicated_storage_id",
];

/// xorshift64*: small, seedable, good enough to pick cases.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn string(&mut self) -> String {
        match self.below(10) {
            0 => String::new(),
            1 => "a\u{0}b".into(),
            2 => "\u{7}\u{1b}[2J\r\n".into(),
            3 => "é漢字🙂".repeat(1 + self.below(40)),
            4 => "x".repeat(256 + self.below(5000)),
            5 => uuid::Uuid::new_v4().to_string(),
            6 => "../../etc/passwd".into(),
            7 => format!("{}", self.next() as i64),
            8 => self.pick(&["available", "in-use", "error", "deleting", "rw", "ro", "true", "null"]).into(),
            _ => self.pick(KEYS).to_string(),
        }
    }

    fn number(&mut self) -> Value {
        match self.below(8) {
            0 => json!(0),
            1 => json!(-1),
            2 => json!(i64::MAX),
            3 => json!(u64::MAX),
            4 => json!(1.5),
            5 => json!(1e308),
            6 => json!(-(self.next() as i64).abs()),
            _ => json!(self.below(10)),
        }
    }

    fn value(&mut self, depth: u32) -> Value {
        let choice = if depth >= 4 { self.below(5) } else { self.below(8) };
        match choice {
            0 => Value::Null,
            1 => json!(self.below(2) == 0),
            2 => self.number(),
            3 | 4 => json!(self.string()),
            5 => Value::Array((0..self.below(4)).map(|_| self.value(depth + 1)).collect()),
            _ => Value::Object(self.object(depth + 1)),
        }
    }

    fn object(&mut self, depth: u32) -> Map<String, Value> {
        let mut m = Map::new();
        for _ in 0..self.below(5) {
            let k = if self.below(6) == 0 { self.string() } else { self.pick(KEYS).to_string() };
            m.insert(k, self.value(depth));
        }
        m
    }

    /// A request body: mostly JSON objects, sometimes other JSON or not JSON at all.
    fn body(&mut self) -> String {
        match self.below(12) {
            0 => "{".into(),
            1 => "\u{0}\u{1}\u{2}garbage".into(),
            2 => "[".repeat(200) + &"]".repeat(200),
            3 => self.value(0).to_string(),
            4 => String::new(),
            _ => Value::Object(self.object(0)).to_string(),
        }
    }

    fn query(&mut self) -> String {
        let mut q = Vec::new();
        for _ in 0..self.below(4) {
            let k = self.pick(QUERY_KEYS);
            let v = match self.below(7) {
                0 => "-1".to_string(),
                1 => "99999999999999999999".to_string(),
                2 => "%00".to_string(),
                3 => "%zz".to_string(),
                4 => common::enc(&json!({"k": "v"}).to_string()),
                5 => common::enc(&self.string()),
                _ => self.below(1000).to_string(),
            };
            q.push(format!("{k}={v}"));
        }
        q.join("&")
    }
}

async fn random_requests_never_get_a_server_error(b: Backend) {
    let seed: u64 =
        std::env::var("CINDERBLOCK_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| rand_seed() | 1);
    let rounds: usize = std::env::var("CINDERBLOCK_FUZZ_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    eprintln!("http fuzz: CINDERBLOCK_FUZZ_SEED={seed} CINDERBLOCK_FUZZ_ROUNDS={rounds}");
    let srv = TestServer::start(b, Opts::default());
    let api = srv.api();
    let p = project();
    // Real resources, so routes reach past their "not found" checks.
    let vol = s(&api.cinder_create_available(&p, json!({"size": 1, "name": "fuzz"})).await, "id");
    let r = api.post(&format!("/v3/{p}/snapshots"), json!({"snapshot": {"volume_id": vol}})).await.expect(202);
    let snap = s(&r.body["snapshot"], "id");
    let r = api.post(&format!("/v3/{p}/types"), json!({"volume_type": {"name": "fuzz-type"}})).await.expect(200);
    let vtype = s(&r.body["volume_type"], "id");

    let templates: Vec<String> = [
        "/v3/{p}/volumes",
        "/v3/{p}/volumes/detail",
        "/v3/{p}/volumes/{vol}",
        "/v3/{p}/volumes/{vol}/action",
        "/v3/{p}/volumes/{vol}/metadata",
        "/v3/{p}/volumes/{vol}/metadata/{key}",
        "/v3/{p}/volumes/summary",
        "/v3/{p}/snapshots",
        "/v3/{p}/snapshots/detail",
        "/v3/{p}/snapshots/{snap}",
        "/v3/{p}/snapshots/{snap}/action",
        "/v3/{p}/snapshots/{snap}/metadata",
        "/v3/{p}/types",
        "/v3/{p}/types/{type}",
        "/v3/{p}/types/{type}/action",
        "/v3/{p}/types/{type}/extra_specs",
        "/v3/{p}/types/{type}/extra_specs/{key}",
        "/v3/{p}/types/{type}/encryption",
        "/v3/{p}/types/{type}/os-volume-type-access",
        "/v3/{p}/qos-specs",
        "/v3/{p}/qos-specs/{rand}",
        "/v3/{p}/os-quota-sets/{p}",
        "/v3/{p}/os-quota-sets/{p}/defaults",
        "/v3/{p}/os-quota-class-sets/default",
        "/v3/{p}/os-services",
        "/v3/{p}/os-services/disable",
        "/v3/{p}/os-hosts",
        "/v3/{p}/limits",
        "/v3/{p}/scheduler-stats/get_pools",
        "/v3/{p}/attachments",
        "/v3/{p}/attachments/{rand}",
        "/v3/{p}/attachments/{rand}/action",
        "/v3/{p}/groups",
        "/v3/{p}/groups/action",
        "/v3/{p}/groups/{rand}/action",
        "/v3/{p}/group_types",
        "/v3/{p}/group_snapshots",
        "/v3/{p}/volume-transfers",
        "/v3/{p}/os-volume-transfer",
        "/v3/{p}/os-volume-transfer/{rand}/accept",
        "/v3/{p}/messages",
        "/v3/{p}/default-types",
        "/v3/{p}/default-types/{p}",
        "/v2/{p}/volumes/{vol}/action",
        "/v2/{p}/cloudvolumes",
        "/v2/{p}/cloudvolumes/detail",
        "/v2/{p}/cloudvolumes/{vol}",
        "/v2/{p}/cloudvolumes/{vol}/action",
        "/v2.1/{p}/cloudvolumes",
        "/v2.1/{p}/cloudvolumes/{vol}/action",
        "/v2/{p}/cloudsnapshots",
        "/v2/{p}/cloudsnapshots/detail",
        "/v2/{p}/cloudsnapshots/{snap}",
        "/v2/{p}/cloudsnapshots/{snap}/rollback",
        "/v2/{p}/os-vendor-volumes/detail",
        "/v2/{p}/os-vendor-snapshots/{snap}/rollback",
        "/v2/{p}/cloudvolumes/{vol}/tags",
        "/v2/{p}/cloudvolumes/{vol}/tags/action",
        "/v1/{p}/jobs/{rand}",
        "/v1/{p}/volumes/{vol}",
        "/identity/v3/auth/tokens",
        "/identity/v3/users",
        "/identity/v3/projects",
        "/identity/v3/roles",
        "/{rand}",
    ]
    .iter()
    .map(|t| t.replace("{p}", &p).replace("{vol}", &vol).replace("{snap}", &snap).replace("{type}", &vtype))
    .collect();

    let mut rng = Rng(seed);
    let client = reqwest::Client::new();
    let base = api.base();
    let methods = [reqwest::Method::POST, reqwest::Method::PUT, reqwest::Method::GET, reqwest::Method::DELETE];
    let mut problems = Vec::new();
    let mut sent = 0usize;
    for _ in 0..rounds {
        for t in &templates {
            for m in &methods {
                // Deleting the real resources would leave the later rounds only "not found".
                if *m == reqwest::Method::DELETE && [&vol, &snap, &vtype].iter().any(|id| t.ends_with(id.as_str())) {
                    continue;
                }
                let path =
                    t.replace("{key}", &common::enc(&rng.string())).replace("{rand}", &common::enc(&rng.string()));
                let path = path.replace(' ', "%20");
                let q = rng.query();
                let url = if q.is_empty() { format!("{base}{path}") } else { format!("{base}{path}?{q}") };
                let mut rb = client.request(m.clone(), &url);
                if matches!(*m, reqwest::Method::POST | reqwest::Method::PUT) {
                    rb = rb.header("Content-Type", "application/json").body(rng.body());
                }
                if rng.below(4) == 0 {
                    rb = rb.header("OpenStack-API-Version", format!("volume 3.{}", rng.below(80)));
                }
                let Ok(r) = rb.send().await else {
                    // A refused URL (the client's own check) is not the daemon's answer.
                    continue;
                };
                sent += 1;
                let st = r.status().as_u16();
                let text = r.text().await.unwrap_or_default();
                let is_json = text.is_empty() || serde_json::from_str::<Value>(&text).is_ok();
                if st >= 500 || (st >= 400 && !is_json) {
                    problems.push(format!("{m} {url} -> {st} {}", &text[..text.len().min(200)]));
                }
            }
        }
        assert!(srv.is_running(), "the daemon died (seed {seed}):\n{}", srv.log_tail(30));
    }
    eprintln!("http fuzz: {sent} requests, {} problems", problems.len());
    assert!(
        problems.is_empty(),
        "{} bad answers (seed {seed}), first ones:\n{}",
        problems.len(),
        problems.iter().take(15).cloned().collect::<Vec<_>>().join("\n")
    );
    // And it still works.
    api.get(&format!("/v3/{p}/volumes/detail")).await.expect(200);
}

fn rand_seed() -> u64 {
    let u = uuid::Uuid::new_v4();
    u.as_u64_pair().0
}
