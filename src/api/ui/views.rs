//! ui: the pages (GET). Each reads through the services as the caller of its session, after the
//! policy action the matching API route names; templates get plain, preformatted values.

use std::collections::BTreeMap;

use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::response::IntoResponse;
use serde::Deserialize;

use super::{all_projects, allow, asset_url, can, html, human_bytes, session, set_cookie, short_time, Page, UiError};
use crate::config::AuthMode;
use crate::error::Error;
use crate::model::{Job, JobStatus, Snapshot, Volume, VolumeStatus};
use crate::service::ui_sessions::{self, UiSession};
use crate::service::Services;
use crate::store::{ListSnapshots, ListVolumes, SnapshotFilter, SnapshotSortKey, SortDir, VolumeFilter, VolumeSortKey};

/// Volumes per page of the list.
const PAGE_SIZE: i64 = 20;

/// What the layout shows on every page.
pub(super) struct Chrome {
    pub title: String,
    pub nav: &'static str,
    pub noauth: bool,
    pub user: String,
    pub project: String,
    pub role: String,
    pub csrf: String,
    pub css: String,
    pub js: String,
    pub app_js: String,
}

impl Chrome {
    pub(super) fn new(svc: &Services, s: &UiSession, title: impl Into<String>, nav: &'static str) -> Chrome {
        let (user, project) = match &s.identity {
            Some(id) => (id.user_name.clone(), id.project_name.clone()),
            None => ("anonymous".into(), s.caller.project_id.clone()),
        };
        let role = crate::service::policy::effective_role(&s.caller.roles).map(|r| r.to_string()).unwrap_or_default();
        Chrome {
            title: title.into(),
            nav,
            noauth: svc.config.auth.mode == AuthMode::Noauth,
            user,
            project,
            role,
            csrf: s.csrf.clone(),
            css: asset_url("app", "css"),
            js: asset_url("htmx", "min.js"),
            app_js: asset_url("app", "js"),
        }
    }
}

/// A volume as the templates show it.
pub(super) struct VolumeRow {
    pub id: String,
    pub name: String,
    pub size: String,
    pub status: String,
    pub busy: bool,
    pub volume_type: String,
    pub attached: String,
    pub created: String,
    pub project: String,
    /// Bytes written (filled on the list only, where it is shown).
    pub allocated: String,
}

fn display_name(name: &Option<String>, id: &str) -> String {
    match name.as_deref() {
        Some(n) if !n.is_empty() => n.to_string(),
        _ => format!("({})", &id[..id.len().min(8)]),
    }
}

fn is_busy(status: &str) -> bool {
    status.ends_with("ing") || status == "reserved"
}

fn volume_row(v: &Volume) -> VolumeRow {
    let attached: Vec<String> = v
        .attachments
        .iter()
        .map(|a| a.instance_uuid.clone().or_else(|| a.attached_host.clone()).unwrap_or_else(|| a.id.clone()))
        .collect();
    VolumeRow {
        id: v.id.clone(),
        name: display_name(&v.name, &v.id),
        size: format!("{} GiB", v.size_gb),
        status: v.status.as_str().to_string(),
        busy: is_busy(v.status.as_str()),
        volume_type: v.volume_type_name.clone(),
        attached: attached.join(", "),
        created: short_time(&v.created_at),
        project: v.project_id.clone(),
        allocated: String::new(),
    }
}

/// A job as the templates show it.
pub(super) struct JobRow {
    pub id: String,
    pub kind: String,
    pub status: String,
    pub done: bool,
    pub failed: bool,
    pub volume_id: String,
    pub reason: String,
    pub begin: String,
    pub end: String,
}

fn job_row(j: &Job) -> JobRow {
    JobRow {
        id: j.id.clone(),
        kind: j.kind.as_str().to_string(),
        status: j.status.as_str().to_string(),
        done: matches!(j.status, JobStatus::Success | JobStatus::Fail),
        failed: j.status == JobStatus::Fail,
        volume_id: j.volume_id.clone().unwrap_or_default(),
        reason: match (&j.error_code, &j.fail_reason) {
            (Some(c), Some(r)) => format!("{c}: {r}"),
            (None, Some(r)) => r.clone(),
            (Some(c), None) => c.clone(),
            (None, None) => String::new(),
        },
        begin: short_time(&j.begin_time),
        end: j.end_time.as_deref().map(short_time).unwrap_or_default(),
    }
}

/// A snapshot as the templates show it.
pub(super) struct SnapshotRow {
    pub id: String,
    pub name: String,
    pub volume_id: String,
    pub size: String,
    pub status: String,
    pub available: bool,
    pub created: String,
}

fn snapshot_row(s: &Snapshot) -> SnapshotRow {
    SnapshotRow {
        id: s.id.clone(),
        name: display_name(&s.name, &s.id),
        volume_id: s.volume_id.clone(),
        size: format!("{} GiB", s.size_gb),
        status: s.status.as_str().to_string(),
        available: s.status.as_str() == "available",
        created: short_time(&s.created_at),
    }
}

// ----- sign-in ----------------------------------------------------------------------------

#[derive(Template)]
#[template(path = "ui/login.html")]
pub(super) struct LoginPage {
    pub css: String,
    pub noauth: bool,
    pub csrf: String,
    pub error: String,
    pub user: String,
    pub project: String,
}

/// The sign-in page, with a fresh pre-session cookie for its CSRF token.
pub(super) async fn login_page(State(svc): State<Services>, headers: HeaderMap) -> Page {
    if session(&svc, &headers).await.is_ok() {
        return Ok(super::see_other("/ui/"));
    }
    login_form(&svc, axum::http::StatusCode::OK, String::new(), String::new(), String::new())
}

/// The sign-in form with `error` shown (and the user's entries kept).
pub(super) fn login_form(
    svc: &Services,
    status: axum::http::StatusCode,
    error: String,
    user: String,
    project: String,
) -> Page {
    let pre = ui_sessions::new_secret()?;
    let page = LoginPage {
        css: asset_url("app", "css"),
        noauth: svc.config.auth.mode == AuthMode::Noauth,
        csrf: ui_sessions::csrf_token(&pre),
        error,
        user,
        project,
    };
    let cookie = set_cookie(svc, super::PRE_COOKIE, &pre, 3600);
    Ok((status, [(header::SET_COOKIE, cookie)], html(&page)).into_response())
}

// ----- overview ---------------------------------------------------------------------------

pub(super) struct PoolView {
    pub name: String,
    pub driver: String,
    pub zone: String,
    pub up: bool,
    pub total: String,
    pub used: String,
    pub used_pct: u64,
    pub allocated: String,
    pub allocated_pct: u64,
    pub provisioned: String,
    pub provisioned_pct: u64,
    pub limit: String,
    pub ratio: String,
    pub max_ratio: String,
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
pub(super) struct OverviewPage {
    pub c: Chrome,
    pub pools: Vec<PoolView>,
    pub show_pools: bool,
    pub counts: Vec<(String, i64)>,
    pub total: i64,
    pub jobs: Vec<JobRow>,
}

fn pct(part: u64, whole: u64) -> u64 {
    part.saturating_mul(100).checked_div(whole).unwrap_or(0).min(100)
}

/// `/ui/`: pools (for those allowed to see them), volumes by status, jobs in flight.
pub(super) async fn overview(State(svc): State<Services>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:volumes:list")?;
    let all = all_projects(&svc);
    let show_pools = can(&s, "evs:schedulerStats:getPools");
    let pools = if show_pools { svc.pool_summaries().await? } else { Vec::new() };
    let pools = pools
        .iter()
        .map(|p| {
            let limit = (p.total_bytes as f64 * p.max_over_subscription_ratio) as u64;
            PoolView {
                name: p.name.clone(),
                driver: p.driver.clone(),
                zone: p.availability_zone.clone(),
                up: p.up,
                total: human_bytes(p.total_bytes),
                used: human_bytes(p.used_bytes),
                used_pct: pct(p.used_bytes, p.total_bytes),
                allocated: human_bytes(p.allocated_bytes),
                allocated_pct: pct(p.allocated_bytes, p.total_bytes),
                provisioned: human_bytes(p.provisioned_bytes),
                provisioned_pct: pct(p.provisioned_bytes, limit),
                limit: human_bytes(limit),
                ratio: format!("{:.2}", p.over_subscription()),
                max_ratio: format!("{:.1}", p.max_over_subscription_ratio),
            }
        })
        .collect();
    let counts: Vec<(String, i64)> = svc.volume_status_counts(&s.caller, all).await?.into_iter().collect();
    let total = counts.iter().map(|(_, n)| n).sum();
    let jobs = if can(&s, "evs:jobs:get") {
        svc.recent_jobs(&s.caller, all, true, 20).await?.iter().map(job_row).collect()
    } else {
        Vec::new()
    };
    Ok(html(&OverviewPage { c: Chrome::new(&svc, &s, "Overview", "overview"), pools, show_pools, counts, total, jobs }))
}

#[derive(Template)]
#[template(path = "ui/jobs_in_flight.html")]
pub(super) struct JobsInFlight {
    pub jobs: Vec<JobRow>,
}

/// The overview's jobs in flight (an htmx fragment, polled; cheaper than the whole overview).
pub(super) async fn jobs_in_flight(State(svc): State<Services>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:jobs:get")?;
    let jobs = svc.recent_jobs(&s.caller, all_projects(&svc), true, 20).await?.iter().map(job_row).collect();
    Ok(html(&JobsInFlight { jobs }))
}

// ----- volumes ----------------------------------------------------------------------------

/// The list's query string.
#[derive(Debug, Default, Deserialize)]
pub(super) struct VolumeQuery {
    #[serde(default)]
    name: String,
    #[serde(default)]
    status: String,
    #[serde(default)]
    sort: String,
    #[serde(default)]
    dir: String,
    #[serde(default)]
    page: Option<i64>,
}

#[derive(Template)]
#[template(path = "ui/volumes.html")]
pub(super) struct VolumesPage {
    pub c: Chrome,
    pub rows: Vec<VolumeRow>,
    pub name: String,
    pub status: String,
    pub sort: String,
    pub dir: String,
    pub statuses: Vec<&'static str>,
    pub sorts: Vec<&'static str>,
    pub page: i64,
    pub pages: i64,
    pub count: i64,
    pub prev: String,
    pub next: String,
    pub can_create: bool,
    pub show_project: bool,
}

/// `/ui/volumes`: filter by name and status, sort, page.
pub(super) async fn volumes(
    State(svc): State<Services>,
    headers: HeaderMap,
    q: Result<Query<VolumeQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:volumes:list")?;
    let Query(q) = q.map_err(|_| Error::invalid("EVS.5400", "The list's query string could not be read."))?;
    let status = q.status.trim().to_string();
    if !status.is_empty() && status.parse::<VolumeStatus>().is_err() {
        return Err(Error::invalid("EVS.5400", format!("Unknown volume status {status:?}.")).into());
    }
    let sort = if q.sort.is_empty() { "created_at".to_string() } else { q.sort.clone() };
    let sort_key = match sort.as_str() {
        "name" => VolumeSortKey::Name,
        "status" => VolumeSortKey::Status,
        "size" => VolumeSortKey::Size,
        "created_at" => VolumeSortKey::CreatedAt,
        _ => return Err(Error::invalid("EVS.5400", "Sort by name, status, size or created_at.").into()),
    };
    let dir = if q.dir == "asc" { "asc" } else { "desc" };
    let page = q.page.unwrap_or(1).clamp(1, 1_000_000);
    let name = q.name.trim().to_string();
    let req = ListVolumes {
        filter: VolumeFilter {
            project_id: (!all_projects(&svc)).then(|| s.caller.project_id.clone()),
            name: (!name.is_empty()).then(|| name.clone()),
            status: (!status.is_empty()).then(|| status.clone()),
            ..VolumeFilter::default()
        },
        sort_key,
        sort_dir: if dir == "asc" { SortDir::Asc } else { SortDir::Desc },
        limit: Some(PAGE_SIZE),
        offset: (page - 1) * PAGE_SIZE,
        marker: None,
        with_count: true,
    };
    let result = svc.list_volumes(&req).await?;
    let count = result.count.unwrap_or(result.volumes.len() as i64);
    let pages = ((count + PAGE_SIZE - 1) / PAGE_SIZE).max(1);
    let link = |p: i64| {
        let qs = serde_urlencoded::to_string([
            ("name", name.as_str()),
            ("status", status.as_str()),
            ("sort", sort.as_str()),
            ("dir", dir),
            ("page", &p.to_string()),
        ])
        .unwrap_or_default();
        format!("/ui/volumes?{qs}")
    };
    let mut rows = Vec::with_capacity(result.volumes.len());
    for v in &result.volumes {
        let mut r = volume_row(v);
        r.allocated = svc.volume_allocation(v).await.map(human_bytes).unwrap_or_else(|| "?".into());
        rows.push(r);
    }
    Ok(html(&VolumesPage {
        c: Chrome::new(&svc, &s, "Volumes", "volumes"),
        rows,
        prev: if page > 1 { link(page - 1) } else { String::new() },
        next: if page < pages { link(page + 1) } else { String::new() },
        name,
        status,
        sort,
        dir: dir.to_string(),
        statuses: VolumeStatus::ALL.iter().map(|s| s.as_str()).collect(),
        sorts: vec!["created_at", "name", "status", "size"],
        page,
        pages,
        count,
        can_create: can(&s, "evs:volumes:create"),
        show_project: all_projects(&svc),
    }))
}

#[derive(Template)]
#[template(path = "ui/new_volume.html")]
pub(super) struct NewVolumePage {
    pub c: Chrome,
    pub types: Vec<String>,
    pub snapshots: Vec<SnapshotRow>,
    pub volumes: Vec<VolumeRow>,
    pub images: Vec<ImageRow>,
    pub source: String,
}

/// The volume types the session's caller may use.
fn types_for(svc: &Services, s: &UiSession) -> Vec<crate::model::VolumeType> {
    svc.catalog.types().into_iter().filter(|t| t.visible_to(&s.caller.project_id, s.caller.is_admin)).collect()
}

/// The query of the create form (`?snapshot=…` or `?volume=…` preselect a source).
#[derive(Debug, Default, Deserialize)]
pub(super) struct NewVolumeQuery {
    #[serde(default)]
    snapshot: String,
    #[serde(default)]
    volume: String,
    #[serde(default)]
    image: String,
}

/// `/ui/volumes/new`: the create form (blank, from a snapshot, from a volume).
pub(super) async fn new_volume(
    State(svc): State<Services>,
    headers: HeaderMap,
    q: Result<Query<NewVolumeQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:volumes:create")?;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let types = types_for(&svc, &s).into_iter().map(|t| t.name).filter(|n| n != "__DEFAULT__").collect();
    let scope = (!all_projects(&svc)).then(|| s.caller.project_id.clone());
    let snaps = svc
        .list_snapshots(&ListSnapshots {
            filter: SnapshotFilter {
                project_id: scope.clone(),
                status: Some("available".into()),
                ..Default::default()
            },
            sort_key: SnapshotSortKey::CreatedAt,
            sort_dir: SortDir::Desc,
            limit: Some(200),
            offset: 0,
            marker: None,
        })
        .await?;
    let vols = svc
        .list_volumes(&ListVolumes {
            filter: VolumeFilter { project_id: scope, ..Default::default() },
            sort_key: VolumeSortKey::Name,
            sort_dir: SortDir::Asc,
            limit: Some(200),
            offset: 0,
            marker: None,
            with_count: false,
        })
        .await?;
    let source = if !q.snapshot.is_empty() {
        format!("snapshot:{}", q.snapshot)
    } else if !q.volume.is_empty() {
        format!("volume:{}", q.volume)
    } else if !q.image.is_empty() {
        format!("image:{}", q.image)
    } else {
        String::new()
    };
    Ok(html(&NewVolumePage {
        c: Chrome::new(&svc, &s, "New volume", "volumes"),
        types,
        snapshots: snaps.iter().map(snapshot_row).collect(),
        volumes: vols.volumes.iter().map(volume_row).collect(),
        images: if can(&s, "image:images:list") {
            images_for(&svc, &s).await?.iter().filter(|i| i.status.as_str() == "active").map(image_row).collect()
        } else {
            Vec::new()
        },
        source,
    }))
}

pub(super) struct AttachmentView {
    pub id: String,
    pub consumer: String,
    pub mountpoint: String,
    pub mode: String,
    pub status: String,
    pub connection: String,
    pub uri: String,
}

fn attachment_view(a: &crate::model::Attachment) -> AttachmentView {
    let info: Option<serde_json::Value> = a.connection_info.as_deref().and_then(|c| serde_json::from_str(c).ok());
    let uri = info
        .as_ref()
        .and_then(|i| {
            let d = &i["data"];
            match i["driver_volume_type"].as_str() {
                Some("nbd") => {
                    let host = d["host"].as_str()?;
                    let export = d["export_name"].as_str()?;
                    let host = if host.contains(':') { format!("[{host}]") } else { host.to_string() };
                    Some(format!("nbd://{host}:{}/{export}", d["port"].as_u64().unwrap_or(10809)))
                }
                Some("local") => d["device_path"].as_str().map(str::to_string),
                _ => None,
            }
        })
        .unwrap_or_default();
    AttachmentView {
        id: a.id.clone(),
        consumer: a.instance_uuid.clone().or_else(|| a.attached_host.clone()).unwrap_or_default(),
        mountpoint: a.mountpoint.clone().unwrap_or_default(),
        mode: format!("{:?}", a.mode).to_lowercase(),
        status: format!("{:?}", a.status).to_lowercase(),
        connection: info.map(|i| i.to_string()).unwrap_or_default(),
        uri,
    }
}

/// The part of a volume page that changes while jobs run (polled by htmx while busy).
#[derive(Template)]
#[template(path = "ui/volume_live.html")]
pub(super) struct VolumeLive {
    pub v: VolumeRow,
    pub allocated: String,
    pub snapshots: Vec<SnapshotRow>,
    pub busy: bool,
    pub can_rollback: bool,
    pub can_create: bool,
    pub csrf: String,
}

#[derive(Template)]
#[template(path = "ui/volume.html")]
pub(super) struct VolumePage {
    pub c: Chrome,
    pub live: VolumeLive,
    pub live_html: String,
    pub description: String,
    pub zone: String,
    pub pool: String,
    pub bootable: bool,
    pub multiattach: bool,
    pub readonly: bool,
    pub source: String,
    pub metadata: Vec<(String, String)>,
    pub tags: Vec<(String, String)>,
    pub attachments: Vec<AttachmentView>,
    pub clones: Vec<VolumeRow>,
    pub qos: Vec<(String, String)>,
    pub job: String,
    pub size_gb: i64,
    pub can_update: bool,
    pub can_extend: bool,
    pub can_delete: bool,
    pub can_snapshot: bool,
    pub can_create: bool,
    pub can_attach: bool,
    pub can_detach: bool,
    pub can_upload: bool,
}

async fn volume_live_of(svc: &Services, s: &UiSession, v: &Volume) -> Result<VolumeLive, UiError> {
    let snaps = svc
        .list_snapshots(&ListSnapshots {
            filter: SnapshotFilter {
                project_id: (!s.caller.is_admin).then(|| s.caller.project_id.clone()),
                volume_id: Some(v.id.clone()),
                ..Default::default()
            },
            sort_key: SnapshotSortKey::CreatedAt,
            sort_dir: SortDir::Desc,
            limit: Some(500),
            offset: 0,
            marker: None,
        })
        .await?;
    let row = volume_row(v);
    let busy = row.busy || snaps.iter().any(|x| is_busy(x.status.as_str()));
    Ok(VolumeLive {
        allocated: svc.volume_allocation(v).await.map(human_bytes).unwrap_or_else(|| "?".into()),
        v: row,
        snapshots: snaps.iter().map(snapshot_row).collect(),
        busy,
        can_rollback: can(s, "evs:snapshots:rollback"),
        can_create: can(s, "evs:volumes:create"),
        csrf: s.csrf.clone(),
    })
}

/// The query of a volume page (`?job=…` follows a job just started).
#[derive(Debug, Default, Deserialize)]
pub(super) struct VolumePageQuery {
    #[serde(default)]
    job: String,
}

/// `/ui/volumes/{id}`: details, snapshots as a timeline, clones, attachments, actions.
pub(super) async fn volume(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    q: Result<Query<VolumePageQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:volumes:get")?;
    let v = svc.get_volume(&s.caller, &id).await?;
    let live = volume_live_of(&svc, &s, &v).await?;
    // Clones: volumes made from this one or from one of its snapshots (bounded scan).
    let snap_ids: Vec<&str> = live.snapshots.iter().map(|x| x.id.as_str()).collect();
    let siblings = svc
        .list_volumes(&ListVolumes {
            filter: VolumeFilter { project_id: Some(v.project_id.clone()), ..Default::default() },
            sort_key: VolumeSortKey::CreatedAt,
            sort_dir: SortDir::Desc,
            limit: Some(1000),
            offset: 0,
            marker: None,
            with_count: false,
        })
        .await?;
    let clones = siblings
        .volumes
        .iter()
        .filter(|o| {
            o.source_volid.as_deref() == Some(v.id.as_str())
                || o.snapshot_id.as_deref().is_some_and(|sid| snap_ids.contains(&sid))
        })
        .map(volume_row)
        .collect();
    let source = match (&v.snapshot_id, &v.source_volid) {
        (Some(snap), _) => format!("snapshot {snap}"),
        (None, Some(vol)) => format!("volume {vol}"),
        (None, None) if !v.image_metadata.is_empty() => {
            format!("image {}", v.image_metadata.get("image_id").cloned().unwrap_or_default())
        }
        _ => "blank".into(),
    };
    let qos = match types_for(&svc, &s).into_iter().find(|t| t.id == v.volume_type_id) {
        Some(t) => {
            let mut q: Vec<(String, String)> = t
                .extra_specs
                .iter()
                .filter(|(k, _)| k.contains("iops") || k.contains("bytes") || k.starts_with("qos"))
                .map(|(k, val)| (k.clone(), val.clone()))
                .collect();
            if let Some(id) = t.qos_specs_id {
                q.push(("qos_specs_id".into(), id));
            }
            q
        }
        None => Vec::new(),
    };
    let job = q.ok().map(|Query(q)| q.job).filter(|j| j.len() == 32 && j.bytes().all(|b| b.is_ascii_hexdigit()));
    Ok(html(&VolumePage {
        c: Chrome::new(&svc, &s, live.v.name.clone(), "volumes"),
        description: v.description.clone().unwrap_or_default(),
        zone: v.availability_zone.clone(),
        pool: v.pool.clone(),
        bootable: v.bootable,
        multiattach: v.multiattach,
        readonly: v.readonly,
        source,
        metadata: v.metadata.iter().map(|(k, val)| (k.clone(), val.clone())).collect(),
        tags: v.tags.iter().map(|(k, val)| (k.clone(), val.clone())).collect(),
        attachments: v.attachments.iter().map(attachment_view).collect(),
        clones,
        qos,
        job: job.unwrap_or_default(),
        size_gb: v.size_gb,
        can_update: can(&s, "evs:volumes:update"),
        can_extend: can(&s, "evs:volumes:extend"),
        can_delete: can(&s, "evs:volumes:delete"),
        can_snapshot: can(&s, "evs:snapshots:create"),
        can_create: can(&s, "evs:volumes:create"),
        can_attach: can(&s, "evs:attachments:create") && can(&s, "evs:attachments:complete"),
        can_detach: can(&s, "evs:attachments:delete"),
        can_upload: can(&s, "evs:volumes:uploadImage"),
        live_html: live.render().map_err(|e| Error::internal(format!("template: {e}")))?,
        live,
    }))
}

/// The live part of a volume page (an htmx fragment).
pub(super) async fn volume_live(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:volumes:get")?;
    let v = svc.get_volume(&s.caller, &id).await?;
    Ok(html(&volume_live_of(&svc, &s, &v).await?))
}

#[derive(Template)]
#[template(path = "ui/confirm_delete.html")]
pub(super) struct ConfirmDeletePage {
    pub c: Chrome,
    pub v: VolumeRow,
    pub snapshots: usize,
}

/// `/ui/volumes/{id}/delete`: the confirmation, naming the volume.
pub(super) async fn confirm_delete(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:volumes:delete")?;
    let v = svc.get_volume(&s.caller, &id).await?;
    let live = volume_live_of(&svc, &s, &v).await?;
    Ok(html(&ConfirmDeletePage {
        c: Chrome::new(&svc, &s, format!("Delete {}", live.v.name), "volumes"),
        snapshots: live.snapshots.len(),
        v: live.v,
    }))
}

// ----- snapshots, jobs, quotas, messages, sessions ---------------------------------------

#[derive(Template)]
#[template(path = "ui/snapshots.html")]
pub(super) struct SnapshotsPage {
    pub c: Chrome,
    pub rows: Vec<SnapshotRow>,
}

/// `/ui/snapshots`: the project's snapshots, newest first.
pub(super) async fn snapshots(State(svc): State<Services>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:snapshots:list")?;
    let rows = svc
        .list_snapshots(&ListSnapshots {
            filter: SnapshotFilter {
                project_id: (!all_projects(&svc)).then(|| s.caller.project_id.clone()),
                ..Default::default()
            },
            sort_key: SnapshotSortKey::CreatedAt,
            sort_dir: SortDir::Desc,
            limit: Some(500),
            offset: 0,
            marker: None,
        })
        .await?;
    Ok(html(&SnapshotsPage {
        c: Chrome::new(&svc, &s, "Snapshots", "snapshots"),
        rows: rows.iter().map(snapshot_row).collect(),
    }))
}

#[derive(Template)]
#[template(path = "ui/jobs.html")]
pub(super) struct JobsPage {
    pub c: Chrome,
    pub rows: Vec<JobRow>,
}

/// `/ui/jobs`: the project's latest jobs, failures with their reasons.
pub(super) async fn jobs(State(svc): State<Services>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:jobs:get")?;
    let rows = svc.recent_jobs(&s.caller, all_projects(&svc), false, 100).await?;
    Ok(html(&JobsPage { c: Chrome::new(&svc, &s, "Jobs", "jobs"), rows: rows.iter().map(job_row).collect() }))
}

#[derive(Template)]
#[template(path = "ui/job.html")]
pub(super) struct JobPage {
    pub c: Chrome,
    pub j: JobRow,
    pub subs: Vec<JobRow>,
}

#[derive(Template)]
#[template(path = "ui/job_progress.html")]
pub(super) struct JobProgress {
    pub j: JobRow,
}

/// `/ui/jobs/{id}`: one job, followed until it ends.
pub(super) async fn job(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:jobs:get")?;
    let jv = svc.get_job(&s.caller, &id).await?;
    Ok(html(&JobPage {
        c: Chrome::new(&svc, &s, format!("Job {}", jv.job.kind.as_str()), "jobs"),
        j: job_row(&jv.job),
        subs: jv.sub_jobs.iter().map(job_row).collect(),
    }))
}

/// A job's progress line (an htmx fragment, polled until the job ends).
pub(super) async fn job_progress(State(svc): State<Services>, Path(id): Path<String>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:jobs:get")?;
    let jv = svc.get_job(&s.caller, &id).await?;
    Ok(html(&JobProgress { j: job_row(&jv.job) }))
}

pub(super) struct QuotaRow {
    pub resource: String,
    pub limit: String,
    pub in_use: i64,
    pub pct: u64,
}

#[derive(Template)]
#[template(path = "ui/quotas.html")]
pub(super) struct QuotasPage {
    pub c: Chrome,
    pub rows: Vec<QuotaRow>,
    pub is_admin: bool,
    pub project: String,
}

/// The quota page's query (`?project=…`: another project, for admins).
#[derive(Debug, Default, Deserialize)]
pub(super) struct QuotaQuery {
    #[serde(default)]
    project: String,
}

/// `/ui/quotas`: a project's limits and usage (the session's; admins may name another).
pub(super) async fn quotas(
    State(svc): State<Services>,
    headers: HeaderMap,
    q: Result<Query<QuotaQuery>, axum::extract::rejection::QueryRejection>,
) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:quotas:get")?;
    let q = q.map(|Query(q)| q).unwrap_or_default();
    let project = if q.project.trim().is_empty() { s.caller.project_id.clone() } else { q.project.trim().to_string() };
    super::super::common::check_project_id(&project)?;
    if project != s.caller.project_id && !s.caller.is_admin {
        return Err(Error::new(
            crate::error::ErrorKind::Forbidden,
            "Policy check failed: only admins see other projects' quotas.",
        )
        .into());
    }
    let usage = svc.quota_usage(&project).await?;
    let rows: BTreeMap<String, QuotaRow> = usage
        .lines
        .iter()
        .map(|l| {
            let k = &l.resource;
            let pct = if l.limit > 0 { pct(l.in_use.max(0) as u64, l.limit as u64) } else { 0 };
            let limit = if l.limit < 0 { "unlimited".to_string() } else { l.limit.to_string() };
            (k.clone(), QuotaRow { resource: k.clone(), limit, in_use: l.in_use, pct })
        })
        .collect();
    Ok(html(&QuotasPage {
        c: Chrome::new(&svc, &s, "Quotas", "quotas"),
        rows: rows.into_values().collect(),
        is_admin: s.caller.is_admin,
        project,
    }))
}

pub(super) struct MessageRow {
    pub created: String,
    pub resource: String,
    pub event: String,
    pub text: String,
    pub request: String,
}

#[derive(Template)]
#[template(path = "ui/messages.html")]
pub(super) struct MessagesPage {
    pub c: Chrome,
    pub rows: Vec<MessageRow>,
}

/// `/ui/messages`: the project's user messages (failed asynchronous work, with reasons).
pub(super) async fn messages(State(svc): State<Services>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "evs:messages:list")?;
    let q = crate::service::messages::ListMessages { limit: Some(200), ..Default::default() };
    let rows = svc.list_messages(&s.caller, &q).await?;
    let rows = rows
        .iter()
        .map(|m| MessageRow {
            created: short_time(&m.created_at),
            resource: format!(
                "{} {}",
                m.resource_type.clone().unwrap_or_default(),
                m.resource_uuid.clone().unwrap_or_default()
            ),
            event: m.event_id.clone(),
            text: m.user_message(),
            request: m.request_id.clone(),
        })
        .collect();
    Ok(html(&MessagesPage { c: Chrome::new(&svc, &s, "Messages", "messages"), rows }))
}

pub(super) struct SessionRow {
    pub handle: String,
    pub created: String,
    pub last_seen: String,
    pub expires: String,
    pub current: bool,
}

#[derive(Template)]
#[template(path = "ui/sessions.html")]
pub(super) struct SessionsPage {
    pub c: Chrome,
    pub rows: Vec<SessionRow>,
}

/// `/ui/sessions`: the user's sessions, each revocable.
pub(super) async fn sessions(State(svc): State<Services>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    let rows = svc
        .list_ui_sessions(&s)
        .await?
        .iter()
        .map(|r| SessionRow {
            handle: r.id_hash[..16].to_string(),
            created: short_time(&r.created_at),
            last_seen: short_time(&r.last_seen_at),
            expires: short_time(&r.expires_at),
            current: r.id_hash == s.record.id_hash,
        })
        .collect();
    Ok(html(&SessionsPage { c: Chrome::new(&svc, &s, "Sessions", "sessions"), rows }))
}

#[derive(Template)]
#[template(path = "ui/attached.html")]
pub(super) struct AttachedPage {
    pub c: Chrome,
    pub v: VolumeRow,
    pub a: AttachmentView,
}

/// The answer to an attach: the connection info, shown this once (its NBD export name is a
/// secret the database keeps only a digest of).
pub(super) fn attached_page(svc: &Services, s: &UiSession, v: &Volume, a: &crate::model::Attachment) -> Page {
    let row = volume_row(v);
    Ok(html(&AttachedPage {
        c: Chrome::new(svc, s, format!("Attached {}", row.name), "volumes"),
        v: row,
        a: attachment_view(a),
    }))
}

pub(super) struct ImageRow {
    pub id: String,
    pub name: String,
    pub status: String,
    pub disk_format: String,
    pub size: String,
    pub visibility: String,
    pub min_disk: i64,
}

fn image_row(i: &crate::model::Image) -> ImageRow {
    ImageRow {
        id: i.id.clone(),
        name: display_name(&i.name, &i.id),
        status: i.status.as_str().to_string(),
        disk_format: i.disk_format.clone().unwrap_or_default(),
        size: i.size.map(|b| human_bytes(b.max(0) as u64)).unwrap_or_default(),
        visibility: i.visibility.clone(),
        min_disk: crate::service::images::image_min_gb(i),
    }
}

#[derive(Template)]
#[template(path = "ui/images.html")]
pub(super) struct ImagesPage {
    pub c: Chrome,
    pub rows: Vec<ImageRow>,
    pub can_create: bool,
}

async fn images_for(svc: &Services, s: &UiSession) -> Result<Vec<crate::model::Image>, UiError> {
    let q = crate::service::images::ImageQuery { limit: Some(500), ..Default::default() };
    Ok(svc.list_images_for(&s.caller, &q).await?.0)
}

/// `/ui/images`: the images the caller sees (its own, shared and public ones).
pub(super) async fn images(State(svc): State<Services>, headers: HeaderMap) -> Page {
    let s = session(&svc, &headers).await?;
    allow(&s, "image:images:list")?;
    let rows = images_for(&svc, &s).await?.iter().map(image_row).collect();
    Ok(html(&ImagesPage {
        c: Chrome::new(&svc, &s, "Images", "images"),
        rows,
        can_create: can(&s, "evs:volumes:create"),
    }))
}
