//! ui: the actions (POST forms). Each checks the session's CSRF token, then the policy action
//! of the matching API route, then calls the same service function as that route; a started job
//! is followed on the volume's page (or the job's page once the volume is gone). Forms answer
//! 303 so that a reload does not post again.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::Extension;

use super::views::login_form;
use super::{
    allow, cookie, parse_form, post_session, see_other, set_cookie, Page, UiError, PRE_COOKIE, SESSION_COOKIE,
};
use crate::config::AuthMode;
use crate::error::{Error, ErrorKind};
use crate::model::AttachMode;
use crate::service::images::UploadToImage;
use crate::service::ui_sessions;
use crate::service::{
    AttachRequest, CreateSnapshot, CreateVolume, Services, UpdateVolume, VolumeSource, CINDER_MAX_SIZE_GB,
};

type Form = HashMap<String, String>;

fn text(f: &Form, k: &str) -> String {
    f.get(k).map(|s| s.trim().to_string()).unwrap_or_default()
}

fn opt_text(f: &Form, k: &str) -> Option<String> {
    Some(text(f, k)).filter(|s| !s.is_empty())
}

fn int(f: &Form, k: &str, what: &str) -> Result<i64, UiError> {
    text(f, k).parse::<i64>().map_err(|_| Error::invalid("EVS.1010", format!("{what} must be a whole number.")).into())
}

/// Sign in (keystone: user, project, password; noauth: an explicit "continue").
pub(super) async fn login(
    State(svc): State<Services>,
    headers: HeaderMap,
    peer: Option<Extension<ConnectInfo<SocketAddr>>>,
    body: Bytes,
) -> Page {
    let form = parse_form(&body)?;
    let pre = cookie(&headers, PRE_COOKIE).unwrap_or_default();
    if pre.is_empty() || !ui_sessions::csrf_matches(&pre, form.get("csrf").map(String::as_str).unwrap_or("")) {
        return Err(super::csrf_refused().into());
    }
    let (user, project) = (text(&form, "user"), text(&form, "project"));
    let started = match svc.config.auth.mode {
        AuthMode::Noauth => svc.start_noauth_ui_session().await,
        AuthMode::Keystone => {
            let from = peer.map(|Extension(ConnectInfo(a))| a.ip());
            let password = form.get("password").cloned().unwrap_or_default();
            svc.sign_in_ui(&user, &project, &password, from).await
        }
    };
    let secret = match started {
        Ok(s) => s,
        Err(e) if matches!(e.kind, ErrorKind::Unauthorized | ErrorKind::TooManyRequests) => {
            let status = if e.kind == ErrorKind::Unauthorized {
                StatusCode::UNAUTHORIZED
            } else {
                StatusCode::TOO_MANY_REQUESTS
            };
            let msg = if e.kind == ErrorKind::Unauthorized {
                "Sign-in failed: check the project, user name and password.".to_string()
            } else {
                e.public_message().to_string()
            };
            return login_form(&svc, status, msg, user, project);
        }
        Err(e) => return Err(e.into()),
    };
    let mut r = see_other("/ui/");
    let h = r.headers_mut();
    if let Ok(v) = set_cookie(&svc, SESSION_COOKIE, &secret, svc.config.ui.session_ttl_seconds).parse() {
        h.append(header::SET_COOKIE, v);
    }
    if let Ok(v) = set_cookie(&svc, PRE_COOKIE, "", 0).parse() {
        h.append(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// Sign out: the session row is deleted and the cookie cleared.
pub(super) async fn logout(State(svc): State<Services>, headers: HeaderMap, body: Bytes) -> Page {
    let (_, _) = post_session(&svc, &headers, &body).await?;
    if let Some(secret) = cookie(&headers, SESSION_COOKIE) {
        svc.sign_out_ui(&secret).await?;
    }
    let mut r = see_other("/ui/login");
    if let Ok(v) = set_cookie(&svc, SESSION_COOKIE, "", 0).parse() {
        r.headers_mut().insert(header::SET_COOKIE, v);
    }
    Ok(r)
}

/// Revoke one of the user's sessions (the sessions page).
pub(super) async fn revoke_session(
    State(svc): State<Services>,
    Path(h): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, _) = post_session(&svc, &headers, &body).await?;
    svc.revoke_ui_session(&s, &h).await?;
    Ok(see_other("/ui/sessions"))
}

/// Create a volume: blank (size), from a snapshot, a volume or an image (`source` =
/// `snapshot:<id>` / `volume:<id>` / `image:<id>`; the size defaults to the source's).
pub(super) async fn create_volume(State(svc): State<Services>, headers: HeaderMap, body: Bytes) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:volumes:create")?;
    let source = text(&f, "source");
    let mut src = VolumeSource::default();
    match source.split_once(':') {
        None if source.is_empty() => {}
        Some(("snapshot", id)) if !id.is_empty() => src.snapshot_id = Some(id.to_string()),
        Some(("volume", id)) if !id.is_empty() => src.source_volid = Some(id.to_string()),
        Some(("image", id)) if !id.is_empty() => src.image_ref = Some(id.to_string()),
        _ => return Err(Error::invalid("EVS.5400", "Choose no source, a snapshot, a volume or an image.").into()),
    }
    let size_gb = match opt_text(&f, "size") {
        Some(_) => Some(int(&f, "size", "The size")?),
        None => None,
    };
    if size_gb.is_none() && src == VolumeSource::default() {
        return Err(Error::invalid("EVS.1010", "A blank volume needs a size.").into());
    }
    let mut metadata = BTreeMap::new();
    if f.get("full_clone").is_some_and(|v| v == "1") {
        metadata.insert("full_clone".to_string(), "1".to_string());
    }
    let req = CreateVolume {
        name: opt_text(&f, "name"),
        description: opt_text(&f, "description"),
        size_gb,
        volume_type: opt_text(&f, "volume_type"),
        metadata,
        count: 1,
        source: src,
        max_size_gb: CINDER_MAX_SIZE_GB,
        ..CreateVolume::default()
    };
    let created = svc.create_volumes(&s.caller, req).await?;
    let id = created.volume_ids.first().ok_or_else(|| Error::internal("create returned no volume"))?;
    Ok(see_other(&format!("/ui/volumes/{id}?job={}", created.job_id)))
}

/// Clone a volume (linked by default, full with `full_clone=1`).
pub(super) async fn clone_volume(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:volumes:create")?;
    let v = svc.get_volume(&s.caller, &id).await?;
    let mut metadata = BTreeMap::new();
    if f.get("full_clone").is_some_and(|x| x == "1") {
        metadata.insert("full_clone".to_string(), "1".to_string());
    }
    let req = CreateVolume {
        name: opt_text(&f, "name"),
        size_gb: Some(v.size_gb),
        volume_type: Some(v.volume_type_id.clone()),
        metadata,
        count: 1,
        source: VolumeSource { source_volid: Some(v.id.clone()), ..VolumeSource::default() },
        max_size_gb: CINDER_MAX_SIZE_GB,
        ..CreateVolume::default()
    };
    let created = svc.create_volumes(&s.caller, req).await?;
    let new = created.volume_ids.first().ok_or_else(|| Error::internal("create returned no volume"))?;
    Ok(see_other(&format!("/ui/volumes/{new}?job={}", created.job_id)))
}

/// Grow a volume.
pub(super) async fn extend_volume(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:volumes:extend")?;
    let new_size = int(&f, "new_size", "The new size")?;
    let job = svc.extend_volume(&s.caller, &id, new_size, false).await?;
    Ok(see_other(&format!("/ui/volumes/{id}?job={job}")))
}

/// Rename a volume (and change its description).
pub(super) async fn rename_volume(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:volumes:update")?;
    let mut upd = UpdateVolume { name: Some(opt_text(&f, "name")), ..UpdateVolume::default() };
    if f.contains_key("description") {
        upd.description = Some(opt_text(&f, "description"));
    }
    svc.update_volume(&s.caller, &id, upd).await?;
    Ok(see_other(&format!("/ui/volumes/{id}")))
}

/// Delete a volume; the form must name it (`confirm` = its name, or its id when unnamed).
pub(super) async fn delete_volume(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:volumes:delete")?;
    let v = svc.get_volume(&s.caller, &id).await?;
    let want = v.name.clone().filter(|n| !n.is_empty()).unwrap_or_else(|| v.id.clone());
    if text(&f, "confirm") != want {
        return Err(
            Error::invalid("EVS.5400", format!("Type the volume's name ({want}) to confirm its deletion.")).into()
        );
    }
    let cascade = f.get("cascade").is_some_and(|x| x == "1");
    let job = svc.delete_volume(&s.caller, &id, cascade).await?;
    Ok(see_other(&format!("/ui/jobs/{job}")))
}

/// Take a snapshot of a volume.
pub(super) async fn create_snapshot(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:snapshots:create")?;
    let req = CreateSnapshot {
        volume_id: id.clone(),
        force: f.get("force").is_some_and(|x| x == "1"),
        name: opt_text(&f, "name"),
        description: opt_text(&f, "description"),
        ..CreateSnapshot::default()
    };
    svc.create_snapshot(&s.caller, req).await?;
    Ok(see_other(&format!("/ui/volumes/{id}")))
}

/// Roll a volume back to one of its snapshots (any of them, not only the latest).
pub(super) async fn rollback_snapshot(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:snapshots:rollback")?;
    let snap = text(&f, "snapshot_id");
    let (job, volume) = svc.rollback_snapshot(&s.caller, &snap, Some(&id)).await?;
    Ok(see_other(&format!("/ui/volumes/{volume}?job={job}")))
}

/// Attach a volume for a consumer host: the attachment is created with a connector (which
/// exports the volume; NBD by default) and completed. The connection info, whose NBD export
/// name is a secret shown only in this answer, is shown once on the page this returns.
pub(super) async fn attach_volume(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:attachments:create")?;
    allow(&s, "evs:attachments:complete")?;
    let host = text(&f, "host");
    if host.is_empty() || host.len() > 255 {
        return Err(Error::invalid("EVS.5400", "Name the host that will connect (1 to 255 characters).").into());
    }
    let mode = match text(&f, "mode").as_str() {
        "" | "rw" => AttachMode::ReadWrite,
        "ro" => AttachMode::ReadOnly,
        _ => return Err(Error::invalid("EVS.5400", "The mode is rw or ro.").into()),
    };
    let req = AttachRequest { host_name: Some(host.clone()), mode: Some(mode), ..AttachRequest::default() };
    let connector = serde_json::json!({"host": host});
    let a = svc.create_attachment(&s.caller, &id, req, Some(&connector)).await?;
    svc.complete_attachment(&s.caller, &a.id).await?;
    let v = svc.get_volume(&s.caller, &id).await?;
    super::views::attached_page(&svc, &s, &v, &a)
}

/// Detach: the attachment (which must be this volume's) is unexported and removed.
pub(super) async fn detach_volume(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:attachments:delete")?;
    let v = svc.get_volume(&s.caller, &id).await?;
    let aid = text(&f, "attachment_id");
    if !v.attachments.iter().any(|a| a.id == aid) {
        return Err(Error::not_found(format!("Attachment {aid} of volume {id} could not be found.")).into());
    }
    svc.delete_attachment(&s.caller, &aid).await?;
    Ok(see_other(&format!("/ui/volumes/{id}")))
}

/// Upload a volume to a new image (`os-volume_upload_image`).
pub(super) async fn upload_to_image(
    State(svc): State<Services>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Page {
    let (s, f) = post_session(&svc, &headers, &body).await?;
    allow(&s, "evs:volumes:uploadImage")?;
    let image_name = text(&f, "image_name");
    if image_name.is_empty() {
        return Err(Error::invalid("EVS.5400", "Name the new image.").into());
    }
    let req = UploadToImage {
        image_name,
        disk_format: opt_text(&f, "disk_format"),
        container_format: None,
        force: f.get("force").is_some_and(|x| x == "1"),
        visibility: None,
        protected: false,
    };
    let started = svc.upload_volume_to_image(&s.caller, &id, req).await?;
    Ok(see_other(&format!("/ui/volumes/{id}?job={}", started.job_id)))
}
