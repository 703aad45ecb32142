//! Checks the OpenAPI document (`openapi_spec.yml`) against the route table:
//! every route has a spec entry with the same declared scope, and every spec
//! entry is served. Routes marked `x-testing-only` exist only in builds with
//! the `testing` feature.

use std::collections::BTreeMap;

use serde_yaml_ng::Value;

use super::access::Access;
use super::routes::routes;

const SPEC: &str = include_str!("openapi_spec.yml");
const METHODS: [&str; 5] = ["get", "put", "post", "delete", "patch"];

/// (METHOD, path) -> (x-scope, x-testing-only) of every operation in the spec.
fn spec_operations() -> BTreeMap<(String, String), (String, bool)> {
    let doc: Value = serde_yaml_ng::from_str(SPEC).expect("openapi_spec.yml is valid YAML");
    let paths = doc
        .get("paths")
        .and_then(Value::as_mapping)
        .expect("spec has paths");
    let mut ops = BTreeMap::new();
    for (path, item) in paths {
        let path = path.as_str().expect("path is a string");
        for method in METHODS {
            let Some(op) = item.get(method) else { continue };
            let scope = op
                .get("x-scope")
                .and_then(Value::as_str)
                .unwrap_or_else(|| panic!("{method} {path} has no x-scope"))
                .to_string();
            let testing = op
                .get("x-testing-only")
                .and_then(Value::as_bool)
                .unwrap_or(false);
            ops.insert((method.to_uppercase(), path.to_string()), (scope, testing));
        }
    }
    ops
}

fn scope_name(access: Access) -> &'static str {
    match access {
        Access::Public => "public",
        Access::Node => "pageserverapi",
        Access::Tenant => "tenant",
    }
}

#[test]
fn every_route_is_in_the_spec_and_the_reverse() {
    let mut spec = spec_operations();
    let mut problems = Vec::new();
    for r in routes() {
        let key = (r.method.to_string(), r.path.to_string());
        match spec.remove(&key) {
            None => problems.push(format!("{} {} is served but not in the spec", key.0, key.1)),
            Some((scope, _)) if scope != scope_name(r.access) => problems.push(format!(
                "{} {}: spec says scope {scope}, route table says {}",
                key.0,
                key.1,
                scope_name(r.access)
            )),
            Some(_) => {}
        }
    }
    for ((method, path), (_, testing)) in spec {
        if testing && !cfg!(feature = "testing") {
            continue;
        }
        problems.push(format!("{method} {path} is in the spec but not served"));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn public_routes_say_so_in_the_spec() {
    let doc: Value = serde_yaml_ng::from_str(SPEC).unwrap();
    for r in routes().into_iter().filter(|r| r.access == Access::Public) {
        let op = &doc["paths"][r.path][r.method.as_str().to_lowercase().as_str()];
        let security = op.get("security").and_then(Value::as_sequence);
        assert!(
            security.is_some_and(|s| s.is_empty()),
            "{} {} is public but its spec entry does not say `security: []`",
            r.method,
            r.path
        );
    }
}
