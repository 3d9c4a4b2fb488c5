//! `importPublicKey(der, len)` and `verifySignature(hash, key, sig, sigLen, data,
//! dataLen)`: RSA PKCS#1 v1.5 signature checks with the RustCrypto crates, the
//! scheme Envoy's native filter uses for RSA keys.
//!
//! As in Envoy, `importPublicKey(...):get()` returns an opaque string naming the
//! key (nil when the key cannot be parsed), and `verifySignature` takes that
//! string; keys live as long as the stream. The key object itself is accepted too.
//! Only RSA keys (DER SubjectPublicKeyInfo) are supported. Unlike Envoy, every
//! import gives its own key: Envoy hands the first key object of a stream out
//! again for every later import, so a second key would silently verify against
//! the first one.
use std::rc::Rc;

use mlua::{Lua, MultiValue, Table, UserData, UserDataFields, Value};
use rsa::pkcs8::DecodePublicKey;
use rsa::{Pkcs1v15Sign, RsaPublicKey};

use super::handle::Handle;
use super::{log, method, script_error, ApiResult, Args};
use crate::stream::VmEnv;

pub struct PublicKey {
    /// The name `get()` returns; `None` when the key could not be parsed.
    name: Option<String>,
    key: Option<RsaPublicKey>,
}

impl UserData for PublicKey {
    fn add_fields<F: UserDataFields<Self>>(fields: &mut F) {
        super::add_object_fields(fields, "PublicKey", false);
    }
}

/// The first `len` bytes of string argument `n` (the API passes lengths
/// separately, as C does); a length past the string's end is an error, where
/// Envoy would read past the buffer.
fn prefix(lua: &Lua, args: &Args, n: usize, len_arg: usize) -> ApiResult<Vec<u8>> {
    let mut bytes = args.bytes(lua, n)?;
    let len = args.integer(len_arg)?;
    match usize::try_from(len) {
        Ok(len) if len <= bytes.len() => {
            bytes.truncate(len);
            Ok(bytes)
        }
        _ => script_error(format!(
            "bad argument #{len_arg} to '{}' (length {len} is outside the {} bytes of argument #{n})",
            args.method(),
            bytes.len()
        )),
    }
}

pub fn import_public_key(lua: &Lua, h: &Handle, args: &Args) -> ApiResult<PublicKey> {
    h.state.check_active()?;
    let der = prefix(lua, args, 1, 2)?;
    let Ok(key) = RsaPublicKey::from_public_key_der(&der) else {
        return Ok(PublicKey { name: None, key: None });
    };
    let mut keys = h.state.public_keys.borrow_mut();
    // Unique within the VM, so a name kept from another stream finds nothing.
    let name = format!("public-key:{}:{}", h.state.id(), keys.len() + 1);
    keys.push((name.clone(), key.clone()));
    Ok(PublicKey { name: Some(name), key: Some(key) })
}

/// The message a failed check carries in Envoy (OpenSSL's EVP_DigestVerify result).
const VERIFY_FAILED: &str = "Failed to verify digest. Error code: 0";

pub fn verify_signature(lua: &Lua, h: &Handle, args: &Args) -> ApiResult<MultiValue> {
    h.state.check_active()?;
    let hash = String::from_utf8_lossy(&args.bytes(lua, 1)?).into_owned();
    let key = match args.get(2) {
        Value::String(name) => {
            let keys = h.state.public_keys.borrow();
            match keys.iter().find(|(n, _)| n.as_bytes() == name.as_bytes().as_ref()) {
                Some((_, key)) => Some(key.clone()),
                None => return script_error("invalid public key"),
            }
        }
        Value::UserData(ud) => match ud.borrow::<PublicKey>() {
            Ok(k) => k.key.clone(),
            Err(_) => return script_error("invalid public key"),
        },
        _ => return args.bad(2, "string"),
    };
    let signature = prefix(lua, args, 3, 4)?;
    let data = prefix(lua, args, 5, 6)?;
    let result = |ok: bool, msg: Option<&str>| -> ApiResult<MultiValue> {
        let msg = match msg {
            Some(m) => Value::String(lua.create_string(m)?),
            None => Value::Nil,
        };
        Ok(MultiValue::from_vec(vec![Value::Boolean(ok), msg]))
    };
    use sha2::Digest;
    let (scheme, digest): (Pkcs1v15Sign, Vec<u8>) = match hash.to_ascii_uppercase().as_str() {
        "SHA1" => (Pkcs1v15Sign::new::<sha1::Sha1>(), sha1::Sha1::digest(&data).to_vec()),
        "SHA224" => (Pkcs1v15Sign::new::<sha2::Sha224>(), sha2::Sha224::digest(&data).to_vec()),
        "SHA256" => (Pkcs1v15Sign::new::<sha2::Sha256>(), sha2::Sha256::digest(&data).to_vec()),
        "SHA384" => (Pkcs1v15Sign::new::<sha2::Sha384>(), sha2::Sha384::digest(&data).to_vec()),
        "SHA512" => (Pkcs1v15Sign::new::<sha2::Sha512>(), sha2::Sha512::digest(&data).to_vec()),
        _ => return result(false, Some(&format!("{hash} is not supported."))),
    };
    let Some(key) = key else {
        return result(false, Some("invalid public key: not an RSA public key in DER SubjectPublicKeyInfo form"));
    };
    match key.verify(scheme, &digest, &signature) {
        Ok(()) => result(true, None),
        Err(_) => result(false, Some(VERIFY_FAILED)),
    }
}

pub fn raw_methods(lua: &Lua, env: &Rc<VmEnv>) -> mlua::Result<Table> {
    let t = lua.create_table()?;
    t.set(
        "get",
        method(lua, "get", |lua, k: &PublicKey, _| -> ApiResult<Value> {
            Ok(match &k.name {
                Some(name) => Value::String(lua.create_string(name)?),
                None => Value::Nil,
            })
        })?,
    )?;
    log::add_methods(lua, env, &t)?;
    Ok(t)
}
