//! The SSL connection object (`streamInfo():downstreamSslConnection()`,
//! `connection():ssl()`), built on Envoy's `connection.*` properties.
//!
//! Envoy exposes the TLS version, the subjects, the *first* URI and DNS SAN of
//! each certificate, the peer certificate's SHA-256 digest and whether a peer
//! certificate was presented (`connection.mtls`). The methods that need anything
//! else (issuer, serial, validity, PEM, OIDs, session, cipher, validation result)
//! raise "unsupported on Proxy-Wasm".
use std::rc::Rc;

use mlua::{Lua, Table, UserData, UserDataFields, Value};

use super::{log, method, unsupported, ApiResult};
use crate::stream::{StreamState, VmEnv};

pub struct Ssl {
    state: Rc<StreamState>,
}

impl UserData for Ssl {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "Ssl", false);
    }
}

/// The parsed peer subject (`parsedSubjectPeerCertificate()`).
pub struct ParsedSubject {
    common_name: String,
    organizations: Vec<String>,
}

impl UserData for ParsedSubject {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "ParsedSubject", false);
    }
}

/// The SSL object on a TLS connection, `nil` on plaintext.
pub fn ssl(state: &Rc<StreamState>) -> ApiResult<Option<Ssl>> {
    state.check_active()?;
    match state.host().property(&["connection", "tls_version"])? {
        Some(v) if !v.is_empty() => Ok(Some(Ssl { state: state.clone() })),
        _ => Ok(None),
    }
}

fn property(state: &StreamState, name: &str) -> ApiResult<String> {
    state.check_active()?;
    Ok(state
        .host()
        .property(&["connection", name])?
        .map(|v| String::from_utf8_lossy(&v).into_owned())
        .unwrap_or_default())
}

/// A one-element array with the property's value, or an empty array.
fn first_san(lua: &Lua, state: &StreamState, name: &str) -> ApiResult<Table> {
    let value = property(state, name)?;
    let t = lua.create_table()?;
    if !value.is_empty() {
        t.raw_set(1, value)?;
    }
    Ok(t)
}

/// Splits an RFC 2253 distinguished name (`CN=a,O=b\,c`) into (attribute,
/// value) pairs, undoing backslash escapes.
pub fn parse_dn(dn: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let (mut key, mut value, mut in_value) = (String::new(), String::new(), false);
    let mut chars = dn.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => {
                if let Some(next) = chars.next() {
                    if in_value {
                        value.push(next)
                    } else {
                        key.push(next)
                    }
                }
            }
            '=' if !in_value => in_value = true,
            ',' | '+' => {
                out.push((key.trim().to_string(), value.clone()));
                key.clear();
                value.clear();
                in_value = false;
            }
            c if in_value => value.push(c),
            c => key.push(c),
        }
    }
    if !key.is_empty() || in_value {
        out.push((key.trim().to_string(), value));
    }
    out
}

const UNSUPPORTED: [(&str, &str); 12] = [
    (
        "peerCertificateValidated",
        "Envoy exposes whether a peer certificate was presented, not whether it was validated",
    ),
    ("oidsPeerCertificate", "Envoy exposes no certificate OIDs"),
    ("oidsLocalCertificate", "Envoy exposes no certificate OIDs"),
    ("serialNumberPeerCertificate", "Envoy exposes no certificate serial number"),
    ("issuerPeerCertificate", "Envoy exposes no certificate issuer"),
    ("urlEncodedPemEncodedPeerCertificate", "Envoy exposes no certificate PEM"),
    ("urlEncodedPemEncodedPeerCertificateChain", "Envoy exposes no certificate PEM"),
    ("validFromPeerCertificate", "Envoy exposes no certificate validity"),
    ("expirationPeerCertificate", "Envoy exposes no certificate validity"),
    ("sessionId", "Envoy exposes no TLS session id"),
    ("ciphersuiteId", "Envoy exposes no cipher suite"),
    ("ciphersuiteString", "Envoy exposes no cipher suite"),
];

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    for (name, prop) in [
        ("tlsVersion", "tls_version"),
        ("subjectPeerCertificate", "subject_peer_certificate"),
        ("subjectLocalCertificate", "subject_local_certificate"),
        ("sha256PeerCertificateDigest", "sha256_peer_certificate_digest"),
    ] {
        t.set(name, method(lua, name, move |_, s: &Ssl, _| property(&s.state, prop))?)?;
    }
    // Envoy's properties carry the first SAN of each kind only.
    for (name, prop) in [
        ("uriSanPeerCertificate", "uri_san_peer_certificate"),
        ("uriSanLocalCertificate", "uri_san_local_certificate"),
        ("dnsSansPeerCertificate", "dns_san_peer_certificate"),
        ("dnsSansLocalCertificate", "dns_san_local_certificate"),
    ] {
        t.set(name, method(lua, name, move |lua, s: &Ssl, _| first_san(lua, &s.state, prop))?)?;
    }
    t.set(
        "peerCertificatePresented",
        method(lua, "peerCertificatePresented", |_, s: &Ssl, _| -> ApiResult<bool> {
            s.state.check_active()?;
            // A bool property is one byte.
            Ok(s.state.host().property(&["connection", "mtls"])?.is_some_and(|v| v.first().is_some_and(|b| *b != 0)))
        })?,
    )?;
    t.set(
        "parsedSubjectPeerCertificate",
        method(lua, "parsedSubjectPeerCertificate", |_, s: &Ssl, _| -> ApiResult<Option<ParsedSubject>> {
            let subject = property(&s.state, "subject_peer_certificate")?;
            if subject.is_empty() {
                return Ok(None);
            }
            // RFC 2253 lists the name's last entry first; Envoy's native object
            // gives the organizations in certificate order.
            let mut parts = parse_dn(&subject);
            parts.reverse();
            let common_name = parts.iter().find(|(k, _)| k == "CN").map(|(_, v)| v.clone()).unwrap_or_default();
            let organizations = parts.into_iter().filter(|(k, _)| k == "O").map(|(_, v)| v).collect();
            Ok(Some(ParsedSubject { common_name, organizations }))
        })?,
    )?;
    for (name, reason) in UNSUPPORTED {
        let what = format!("sslConnection:{name}()");
        t.set(
            name,
            method(lua, name, move |_, s: &Ssl, _| -> ApiResult<Value> {
                s.state.check_active()?;
                unsupported(&what, reason)
            })?,
        )?;
    }
    log::add_methods(lua, env, &t)?;
    Ok(t)
}

pub fn parsed_subject_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set("commonName", method(lua, "commonName", |_, p: &ParsedSubject, _| Ok(p.common_name.clone()))?)?;
    t.set("organizationName", method(lua, "organizationName", |_, p: &ParsedSubject, _| Ok(p.organizations.clone()))?)?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}
