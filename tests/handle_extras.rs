//! Native tests of the handle's metadata, filter state, stats, crypto and
//! routing methods, through the fake host.
#![allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod fake_host;

use std::collections::{BTreeMap, HashMap};

use base64::Engine;
use fake_host::{Plugin, GET};
use prost::Message;
use prost_types::value::Kind;
use proxy_wasm_lua::host::LogLevel;
use proxy_wasm_lua::proto::{Metadata, SetEnvoyFilterStateArguments, STRUCT_TYPE_URL};
use proxy_wasm_lua::stream::Verdict;

fn logs(p: &Plugin) -> Vec<String> {
    p.host.logs_at(LogLevel::Info).iter().map(|l| l.trim_start_matches("script log: ").to_string()).collect()
}

fn s(v: &str) -> prost_types::Value {
    prost_types::Value { kind: Some(Kind::StringValue(v.into())) }
}

fn n(v: f64) -> prost_types::Value {
    prost_types::Value { kind: Some(Kind::NumberValue(v)) }
}

fn st(fields: &[(&str, prost_types::Value)]) -> prost_types::Struct {
    prost_types::Struct { fields: fields.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>() }
}

fn metadata(namespaces: &[(&str, prost_types::Struct)]) -> Vec<u8> {
    Metadata {
        filter_metadata: namespaces.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<HashMap<_, _>>(),
        typed_filter_metadata: HashMap::new(),
    }
    .encode_to_vec()
}

fn run(p: &Plugin) {
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
}

#[test]
fn route_metadata_prefers_the_filter_name_and_falls_back_to_the_lua_filter_name() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local m = h:metadata()
          h:logInfo(tostring(m:get("who")) .. " " .. tostring(m:get("n")) .. " " .. math.type(m:get("n")))
          h:logInfo(select('#', m:get("absent")))
          local nested = m:get("nested")
          nested.list[1] = "changed by the script"
          h:logInfo(m:get("nested").list[1] .. " " .. tostring(m:get("nested").list[2]))
          h:logInfo(tostring(h:route():metadata():get("who")))
          h:logInfo(tostring(h:virtualHost():metadata():get("who")))
          local keys = {}
          for k, v in pairs(m) do keys[#keys + 1] = k end
          table.sort(keys)
          h:logInfo(table.concat(keys, ","))
        end
        "#,
    );
    let list =
        prost_types::Value { kind: Some(Kind::ListValue(prost_types::ListValue { values: vec![s("first"), n(2.5)] })) };
    let nested = prost_types::Value { kind: Some(Kind::StructValue(st(&[("list", list)]))) };
    p.host.properties.borrow_mut().insert("plugin_name".into(), b"my.plugin".to_vec());
    p.host.properties.borrow_mut().insert(
        "xds.route_metadata".into(),
        metadata(&[
            ("my.plugin", st(&[("who", s("plugin name")), ("n", n(7.0)), ("nested", nested)])),
            ("envoy.filters.http.lua", st(&[("who", s("lua filter name"))])),
        ]),
    );
    p.host.properties.borrow_mut().insert(
        "xds.virtual_host_metadata".into(),
        metadata(&[("envoy.filters.http.lua", st(&[("who", s("vhost under lua name"))]))]),
    );
    run(&p);
    assert_eq!(
        logs(&p),
        vec!["plugin name 7 integer", "0", "first 2.5", "plugin name", "vhost under lua name", "n,nested,who",]
    );
}

#[test]
fn metadata_is_empty_without_a_route_and_filter_name_config_wins() {
    let p = Plugin::new(
        r#"{"inline_code": "function envoy_on_request(h) h:logInfo(tostring((h:metadata():get('who'))) .. ' ' .. tostring((h:route():metadata():get('who')))) end",
            "filter_name": "configured"}"#,
    )
    .unwrap();
    run(&p);
    p.host.properties.borrow_mut().insert("plugin_name".into(), b"ignored".to_vec());
    p.host.properties.borrow_mut().insert(
        "xds.route_metadata".into(),
        metadata(&[("configured", st(&[("who", s("configured name"))])), ("ignored", st(&[("who", s("no"))]))]),
    );
    run(&p);
    assert_eq!(logs(&p), vec!["nil nil", "configured name configured name"]);
}

#[test]
fn undecodable_metadata_is_a_clear_script_error() {
    let p = Plugin::with_script("function envoy_on_request(h) h:metadata() end");
    p.host.properties.borrow_mut().insert("xds.route_metadata".into(), vec![0xff, 0xff, 0xff]);
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Pause);
    let errors = p.host.logs_at(LogLevel::Error).join("\n");
    assert!(errors.contains("inline_code:1: cannot decode xds.route_metadata"), "{errors}");
}

#[test]
fn filter_context_comes_from_the_configuration() {
    let script = r#"
        function envoy_on_request(h)
          local c = h:filterContext()
          h:logInfo(tostring((c:get("tier"))) .. " " .. tostring((c:get("limit"))) .. " " .. tostring(c:get("opts") and c:get("opts")[2]))
        end
    "#;
    let cfg = serde_json::json!({"inline_code": script, "filter_context": {"tier": "gold", "limit": 10, "opts": [true, "x"]}});
    let p = Plugin::new(&cfg.to_string()).unwrap();
    run(&p);
    let p2 = Plugin::with_script(script);
    run(&p2);
    assert_eq!(logs(&p), vec!["gold 10 x"]);
    assert_eq!(logs(&p2), vec!["nil nil nil"]);
}

#[test]
fn dynamic_metadata_reads_envoys_with_the_scripts_writes_on_top() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local dm = h:streamInfo():dynamicMetadata()
          dm:set("envoy.filters.http.jwt_authn", "added", "by script")
          dm:set("envoy.filters.http.jwt_authn", "sub", "overridden")
          dm:set("mine", "k", 1)
          local jwt = dm:get("envoy.filters.http.jwt_authn")
          h:logInfo(jwt.iss .. " " .. jwt.sub .. " " .. jwt.added)
          local names = {}
          for ns, t in pairs(dm) do names[#names + 1] = ns end
          table.sort(names)
          h:logInfo(table.concat(names, ","))
          h:logInfo(tostring(h:streamInfo():dynamicTypedMetadata("typed").fields.a.string_value))
          h:logInfo(tostring(h:streamInfo():dynamicTypedMetadata("other_type")))
          h:logInfo(tostring(h:streamInfo():dynamicTypedMetadata("absent")))
        end
        "#,
    );
    let typed =
        prost_types::Any { type_url: STRUCT_TYPE_URL.into(), value: st(&[("a", s("typed a"))]).encode_to_vec() };
    let other = prost_types::Any { type_url: "type.googleapis.com/some.Other".into(), value: vec![] };
    let md = Metadata {
        filter_metadata: [(
            "envoy.filters.http.jwt_authn".to_string(),
            st(&[("iss", s("issuer")), ("sub", s("subject"))]),
        )]
        .into_iter()
        .collect(),
        typed_filter_metadata: [("typed".to_string(), typed), ("other_type".to_string(), other)].into_iter().collect(),
    };
    p.host.properties.borrow_mut().insert("metadata".into(), md.encode_to_vec());
    run(&p);
    assert_eq!(
        logs(&p),
        vec!["issuer overridden by script", "envoy.filters.http.jwt_authn,mine", "typed a", "nil", "nil"]
    );
}

#[test]
fn filter_state_get_reads_the_property_and_set_calls_envoys_foreign_function() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local fs = h:streamInfo():filterState()
          h:logInfo(tostring(fs:get("some.key")) .. " " .. select('#', fs:get("absent")))
          fs:set("envoy.string", "envoy.string", "value")
          local ok, err = pcall(fs.set, fs, "key", "other.factory", "v")
          h:logInfo((err:gsub("^.-:%d+: ", "")))
          local ok, err = pcall(fs.get, fs, "some.key", "field")
          h:logInfo((err:gsub("^.-:%d+: ", "")))
        end
        "#,
    );
    p.host.properties.borrow_mut().insert("filter_state.some.key".into(), b"stored".to_vec());
    p.host.foreign.borrow_mut().insert("set_envoy_filter_state".into(), Ok(vec![]));
    run(&p);
    let logs = logs(&p);
    assert_eq!(logs[0], "stored 0");
    let calls = p.host.foreign_calls.borrow();
    let first = SetEnvoyFilterStateArguments::decode(calls[0].1.as_slice()).unwrap();
    assert_eq!((first.path.as_str(), first.value.as_slice()), ("envoy.string", b"value".as_slice()));
    drop(calls);
    assert_eq!(calls_len(&p), 1, "a key other than the factory never reaches the host");
    assert!(
        logs[1].contains(
            "is unsupported on Proxy-Wasm: Envoy's set_envoy_filter_state stores an object under its factory's name"
        ),
        "{logs:?}"
    );
    assert!(logs[2].contains("filterState():get(name, field) is unsupported on Proxy-Wasm"), "{logs:?}");
}

fn calls_len(p: &Plugin) -> usize {
    p.host.foreign_calls.borrow().len()
}

#[test]
fn filter_state_set_failures_use_envoys_messages() {
    let script = r#"
        function envoy_on_request(h)
          local fs = h:streamInfo():filterState()
          local ok, err = pcall(fs.set, fs, "f.name", "f.name", "val")
          h:logInfo((err:gsub("^.-:%d+: ", "")))
        end
    "#;
    for (status, want) in
        [(1, "'f.name' does not have an object factory"), (2, "failed to create an object 'f.name' from value 'val'")]
    {
        let p = Plugin::with_script(script);
        p.host.foreign.borrow_mut().insert("set_envoy_filter_state".into(), Err(status));
        run(&p);
        assert_eq!(logs(&p), vec![want]);
    }
}

#[test]
fn stats_define_each_metric_once_and_follow_envoys_rules() {
    let cfg = serde_json::json!({"stat_prefix": "team", "inline_code": r#"
        function envoy_on_request(h)
          local st = h:stats()
          local c = st:counter("requests")
          c:inc(); c:add(4)
          st:counter("requests"):inc()
          local g = st:gauge("inflight")
          g:set(10); g:inc(); g:dec(); g:dec(); g:add(5); g:sub(2)
          st:histogram("sizes", "bytes"):recordValue(123)
          st:histogram("plain"):recordValue(1)
          h:logInfo(c:value() .. " " .. g:value() .. " " .. math.type(c:value()))
          for _, f in ipairs({function() c:add(-1) end, function() g:add(-1) end, function() g:sub(-1) end,
                              function() g:set(-1) end, function() st:histogram("h"):recordValue(-5) end,
                              function() st:histogram("h", "seconds") end}) do
            local ok, err = pcall(f)
            h:logInfo((err:gsub("^.-:%d+: ", "")))
          end
        end
    "#});
    let p = Plugin::new(&cfg.to_string()).unwrap();
    run(&p);
    run(&p);
    assert_eq!(p.host.metric("lua.team.requests"), Some(12));
    assert_eq!(p.host.metric("lua.team.inflight"), Some(12));
    assert_eq!(p.host.metrics.borrow().len(), 5, "one definition per metric: {:?}", p.host.metrics.borrow());
    assert_eq!(p.host.samples.borrow().iter().filter(|(n, _)| n == "lua.team.sizes").count(), 2);
    let logs = logs(&p);
    assert_eq!(
        &logs[..7],
        &[
            "6 12 integer",
            "counter add amount must be non-negative",
            "gauge add amount must be non-negative",
            "gauge sub amount must be non-negative",
            "gauge set value must be non-negative",
            "histogram value must be non-negative",
            "invalid histogram unit 'seconds', expected 'ms', 'milliseconds', 'microseconds', 'nanoseconds', 'bytes', or 'unspecified'",
        ]
    );
}

fn rsa_fixture() -> serde_json::Value {
    serde_json::from_str(include_str!("fixtures/rsa.json")).unwrap()
}

#[test]
fn verify_signature_checks_rsa_pkcs1_signatures() {
    let f = rsa_fixture();
    let b64 = |k: &str| base64::engine::general_purpose::STANDARD.decode(f[k].as_str().unwrap()).unwrap();
    let lua_bytes = |b: &[u8]| b.iter().map(|x| format!("\\{x}")).collect::<String>();
    let script = format!(
        r#"
        local der, sig, sig1 = "{}", "{}", "{}"
        function envoy_on_request(h)
          local key = h:importPublicKey(der, #der):get()
          h:logInfo(type(key))
          local function check(hash, s, data)
            local ok, err = h:verifySignature(hash, key, s, #s, data, #data)
            h:logInfo(tostring(ok) .. " " .. tostring(err))
          end
          check("sha256", sig, "hello world")
          check("SHA1", sig1, "hello world")
          check("SHA256", sig, "hello world!")
          check("SHA512", sig, "hello world")
          check("md5", sig, "hello world")
          -- An unparsable key: get() is nil; later keys are not affected.
          local bad = h:importPublicKey("not a key", 9)
          h:logInfo(tostring(bad:get()))
          local ok, err = pcall(h.verifySignature, h, "SHA256", bad:get(), sig, #sig, "hello world", 11)
          h:logInfo((err:gsub("^.-:%d+: ", "")))
          -- The key object works as well as its name; a name never imported does not.
          h:logInfo(tostring(h:verifySignature("SHA256", h:importPublicKey(der, #der), sig, #sig, "hello world", 11)))
          local ok2, err2 = pcall(h.verifySignature, h, "SHA256", "not a key name", sig, #sig, "x", 1)
          h:logInfo((err2:gsub("^.-:%d+: ", "")))
          local ok3, err3 = pcall(h.importPublicKey, h, der, #der + 1)
          h:logInfo((err3:gsub("^.-:%d+: ", "")))
          -- Lengths cut the strings, as in Envoy.
          local ok4 = h:verifySignature("SHA256", key, sig .. "junk", #sig, "hello world and more", 11)
          h:logInfo(tostring(ok4))
          saved_key = saved_key or key
        end

        function envoy_on_response(h)
          local ok, err = pcall(h.verifySignature, h, "SHA256", saved_key, sig, #sig, "hello world", 11)
          h:logInfo("other stream: " .. (err:gsub("^.-:%d+: ", "")))
        end
        "#,
        lua_bytes(&b64("public_key_der_b64")),
        lua_bytes(&b64("sig_sha256_b64")),
        lua_bytes(&b64("sig_sha1_b64"))
    );
    let p = Plugin::with_script(&script);
    run(&p);
    // A second stream cannot use the first one's key name.
    let (mut stream, _) = p.request(GET);
    p.host.set(proxy_wasm_lua::host::MapType::ResponseHeaders, &[(":status", "200")]);
    stream.on_response_headers(true);
    // Two streams ran the request hook; the second one's response hook tried
    // the first stream's key name.
    let one_request = [
        "string",
        "true nil",
        "true nil",
        "false Failed to verify digest. Error code: 0",
        "false Failed to verify digest. Error code: 0",
        "false md5 is not supported.",
        "nil",
        "bad argument #2 to 'verifySignature' (string expected, got nil)",
        "true",
        "invalid public key",
        "bad argument #2 to 'importPublicKey' (length 295 is outside the 294 bytes of argument #1)",
        "true",
    ];
    let mut want: Vec<&str> = one_request.iter().chain(one_request.iter()).copied().collect();
    want.push("other stream: invalid public key");
    assert_eq!(logs(&p), want);
}

#[test]
fn clear_route_cache_calls_the_host_on_the_request_path_only() {
    let script = r#"
        function envoy_on_request(h) h:clearRouteCache() end
        function envoy_on_response(h) h:clearRouteCache() h:logInfo("response hook ran") end
    "#;
    let p = Plugin::with_script(script);
    p.host.foreign.borrow_mut().insert("clear_route_cache".into(), Ok(vec![]));
    let (mut stream, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Continue, "{}", p.host.all_logs());
    p.host.set(proxy_wasm_lua::host::MapType::ResponseHeaders, &[(":status", "200")]);
    assert_eq!(stream.on_response_headers(true), Verdict::Continue, "{}", p.host.all_logs());
    let names: Vec<String> = p.host.foreign_calls.borrow().iter().map(|(n, _)| n.clone()).collect();
    assert_eq!(names, vec!["clear_route_cache"]);
    assert_eq!(logs(&p), vec!["response hook ran"]);

    // A host without the function: a clear error, fail-closed.
    let p = Plugin::with_script(script);
    let (_s, verdict) = p.request(GET);
    assert_eq!(verdict, Verdict::Pause);
    let errors = p.host.logs_at(LogLevel::Error).join("\n");
    assert!(errors.contains("handle:clearRouteCache() is unsupported on Proxy-Wasm: this host has no clear_route_cache foreign function"), "{errors}");
}

#[test]
fn upstream_override_host_checks_arguments_then_says_it_is_unsupported() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          for _, args in ipairs({{"example.com"}, {""}, {"10.0.0.1", "yes"}, {"10.0.0.1"}, {"[::1]:80", true}}) do
            local ok, err = pcall(h.setUpstreamOverrideHost, h, args[1], args[2])
            h:logInfo((err:gsub("^.-:%d+: ", "")))
          end
          local ok, err = pcall(h.connectionStreamInfo, h)
          h:logInfo((err:gsub("^.-:%d+: ", "")))
          local si = h:streamInfo()
          for _, m in ipairs({"virtualClusterName", "drainConnectionUponCompletion"}) do
            local ok, err = pcall(si[m], si)
            h:logInfo((err:gsub("^.-:%d+: ", "")))
          end
        end
        "#,
    );
    run(&p);
    let logs = logs(&p);
    assert_eq!(logs[0], "host is not a valid IP address");
    assert_eq!(logs[1], "host is not a valid IP address");
    assert_eq!(logs[2], "bad argument #2 to 'setUpstreamOverrideHost' (boolean expected, got string)");
    for l in &logs[3..5] {
        assert!(l.starts_with("handle:setUpstreamOverrideHost() is unsupported on Proxy-Wasm: "), "{l}");
    }
    assert!(logs[5].starts_with("handle:connectionStreamInfo() is unsupported on Proxy-Wasm: "), "{}", logs[5]);
    assert!(logs[6].starts_with("streamInfo():virtualClusterName() is unsupported on Proxy-Wasm: "), "{}", logs[6]);
    assert!(logs[7].starts_with("streamInfo():drainConnectionUponCompletion() is unsupported"), "{}", logs[7]);
}

#[test]
fn the_ssl_object_reads_envoys_connection_properties() {
    let p = Plugin::with_script(
        r#"
        function envoy_on_request(h)
          local ssl = h:streamInfo():downstreamSslConnection()
          h:logInfo(ssl:tlsVersion() .. " " .. tostring(ssl:peerCertificatePresented()))
          h:logInfo(ssl:subjectPeerCertificate() .. " | " .. ssl:subjectLocalCertificate())
          h:logInfo(#ssl:uriSanPeerCertificate() .. " " .. ssl:uriSanPeerCertificate()[1] .. " " .. #ssl:dnsSansPeerCertificate())
          h:logInfo(ssl:dnsSansLocalCertificate()[1] .. " " .. ssl:sha256PeerCertificateDigest())
          local subject = ssl:parsedSubjectPeerCertificate()
          h:logInfo(subject:commonName() .. " " .. table.concat(subject:organizationName(), ";"))
          local ok, err = pcall(ssl.serialNumberPeerCertificate, ssl)
          h:logInfo((err:gsub("^.-:%d+: ", "")))
          h:logInfo(tostring(h:connection():ssl() ~= nil))
        end
        "#,
    );
    for (k, v) in [
        ("connection.tls_version", "TLSv1.3"),
        ("connection.mtls", "\u{1}"),
        ("connection.subject_peer_certificate", r"CN=client\, one,O=Org A,O=Org B"),
        ("connection.subject_local_certificate", "CN=lua.test"),
        ("connection.uri_san_peer_certificate", "spiffe://test/client"),
        ("connection.dns_san_local_certificate", "lua.test"),
        ("connection.sha256_peer_certificate_digest", "abc123"),
    ] {
        p.host.properties.borrow_mut().insert(k.into(), v.as_bytes().to_vec());
    }
    run(&p);
    assert_eq!(
        logs(&p),
        vec![
            "TLSv1.3 true",
            r"CN=client\, one,O=Org A,O=Org B | CN=lua.test",
            "1 spiffe://test/client 0",
            "lua.test abc123",
            "client, one Org B;Org A",
            "sslConnection:serialNumberPeerCertificate() is unsupported on Proxy-Wasm: Envoy exposes no certificate serial number",
            "true",
        ]
    );
}
