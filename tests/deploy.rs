//! The deploy recipes are tested, not just written: every YAML and TOML file
//! under `deploy/` parses, every wxgate config they carry passes
//! `wxgate check`, and the Kubernetes manifests agree with their config
//! (ports, probe paths, shutdown timing). The Dockerfile and the systemd unit
//! keep their hardening.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use yaml_rust2::{Yaml, YamlLoader};

const DEPLOY: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy");

fn files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            files(&path, out);
        } else {
            out.push(path);
        }
    }
}

fn deploy_files(ext: &[&str]) -> Vec<PathBuf> {
    let mut all = Vec::new();
    files(Path::new(DEPLOY), &mut all);
    all.retain(|p| {
        p.extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| ext.contains(&e))
    });
    all.sort();
    all
}

fn yaml_docs(path: &Path) -> Vec<Yaml> {
    let text = std::fs::read_to_string(path).unwrap();
    YamlLoader::load_from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `wxgate check` on a config text, with dummy secrets. Upstream host names
/// are cluster or compose names that do not resolve here: they become
/// 127.0.0.1 (same port), everything else is checked as written.
fn check(name: &str, config: &str) -> toml::Value {
    let dir = support::TempDir::new("deploy");
    let value: toml::Value = toml::from_str(config).unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut local = value.clone();
    if let Some(routes) = local.get_mut("routes").and_then(|r| r.as_array_mut()) {
        for route in routes {
            if let Some(ups) = route.get_mut("upstreams").and_then(|u| u.as_array_mut()) {
                for u in ups {
                    let port = u
                        .as_str()
                        .and_then(|s| s.rsplit_once(':'))
                        .map(|(_, p)| p.to_string());
                    *u = toml::Value::String(format!("127.0.0.1:{}", port.expect("host:port")));
                }
            }
        }
    }
    let path = dir.write("config.toml", &toml::to_string(&local).unwrap());
    let out = Command::new(env!("CARGO_BIN_EXE_wxgate"))
        .args(["check", "--config"])
        .arg(&path)
        .env_clear()
        .env(
            "WXGATE_JWT_SECRET",
            "dummy jwt secret for the deploy test, 32+ bytes",
        )
        .env("WXGATE_WECHAT_SECRET", "dummy wechat secret")
        .env("WXGATE_REDIS_URL", "redis://127.0.0.1:6379/0")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "wxgate check refuses the config of {name}:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    value
}

fn port_of(addr: &str) -> i64 {
    addr.rsplit_once(':').unwrap().1.parse().unwrap()
}

#[test]
fn every_yaml_and_toml_file_parses() {
    let yaml = deploy_files(&["yml", "yaml"]);
    assert!(yaml.len() >= 8, "{yaml:?}");
    for path in &yaml {
        assert!(!yaml_docs(path).is_empty(), "{}", path.display());
    }
    let toml_files = deploy_files(&["toml"]);
    assert!(!toml_files.is_empty());
    for path in toml_files {
        let text = std::fs::read_to_string(&path).unwrap();
        check(&path.display().to_string(), &text);
    }
}

#[test]
fn the_compose_file_publishes_the_port_its_config_listens_on() {
    let compose = &yaml_docs(&Path::new(DEPLOY).join("docker-compose.yml"))[0];
    let config = check(
        "compose",
        &std::fs::read_to_string(Path::new(DEPLOY).join("compose/wxgate.toml")).unwrap(),
    );
    let listen = port_of(config["server"]["listen"].as_str().unwrap());
    for service in ["wxgate-a", "wxgate-b"] {
        let ports = compose["services"][service]["ports"].as_vec().unwrap();
        assert!(
            ports
                .iter()
                .any(|p| p.as_str().is_some_and(|p| port_of(p) == listen)),
            "{service} does not publish container port {listen}: {ports:?}"
        );
    }
    // Redis must never evict a revocation.
    let redis = format!("{:?}", compose["services"]["redis"]["command"]);
    assert!(
        redis.contains("noeviction") && redis.contains("appendonly"),
        "{redis}"
    );
}

/// The Kubernetes manifests, by kind.
fn kubernetes() -> Vec<Yaml> {
    deploy_files(&["yaml"])
        .iter()
        .filter(|p| p.starts_with(Path::new(DEPLOY).join("kubernetes")))
        .flat_map(|p| yaml_docs(p))
        .collect()
}

fn of_kind<'a>(docs: &'a [Yaml], kind: &str) -> &'a Yaml {
    docs.iter()
        .find(|d| d["kind"].as_str() == Some(kind))
        .unwrap_or_else(|| panic!("no {kind}"))
}

#[test]
fn the_kubernetes_manifests_agree_with_their_config() {
    let docs = kubernetes();
    let kustomization = of_kind(&docs, "Kustomization");
    let listed: Vec<&str> = kustomization["resources"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    for file in deploy_files(&["yaml"]) {
        let name = file.file_name().unwrap().to_str().unwrap();
        if file.parent().unwrap().ends_with("kubernetes") && name != "kustomization.yaml" {
            assert!(
                listed.contains(&name),
                "{name} is not in kustomization.yaml"
            );
        }
    }

    let config_map = of_kind(&docs, "ConfigMap");
    let config = check(
        "configmap.yaml",
        config_map["data"]["config.toml"].as_str().unwrap(),
    );
    let http = port_of(config["server"]["listen"].as_str().unwrap());
    let metrics = port_of(config["metrics"]["listen"].as_str().unwrap());
    let grace: u64 = config["server"]["grace_period"]
        .as_str()
        .unwrap()
        .trim_end_matches('s')
        .parse()
        .unwrap();

    let deployment = of_kind(&docs, "Deployment");
    let spec = &deployment["spec"]["template"]["spec"];
    assert!(deployment["spec"]["replicas"].as_i64().unwrap() >= 2);
    let container = &spec["containers"][0];
    let port = |name: &str| {
        container["ports"]
            .as_vec()
            .unwrap()
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .and_then(|p| p["containerPort"].as_i64())
            .unwrap_or_else(|| panic!("no container port {name}"))
    };
    assert_eq!(port("http"), http, "containerPort http vs [server] listen");
    assert_eq!(
        port("metrics"),
        metrics,
        "containerPort metrics vs [metrics] listen"
    );
    for (probe, path) in [("readinessProbe", "/readyz"), ("livenessProbe", "/healthz")] {
        assert_eq!(
            container[probe]["httpGet"]["path"].as_str(),
            Some(path),
            "{probe}"
        );
        assert_eq!(
            container[probe]["httpGet"]["port"].as_str(),
            Some("http"),
            "{probe}"
        );
    }
    assert!(
        config["server"].get("health_path_prefix").is_none(),
        "probe paths assume the default prefix"
    );
    // The config file is where the Deployment mounts it and tells wxgate to read it.
    let args: Vec<&str> = container["args"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(Yaml::as_str)
        .collect();
    let mount = container["volumeMounts"][0]["mountPath"].as_str().unwrap();
    assert!(
        args.windows(2)
            .any(|w| w == ["--config", &format!("{mount}/config.toml")]),
        "{args:?}"
    );
    // Shutdown: endpoints drop the pod (preStop), then wxgate drains for its
    // grace period, all before the kubelet's SIGKILL.
    let pre_stop: u64 = container["lifecycle"]["preStop"]["exec"]["command"][1]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    let termination = spec["terminationGracePeriodSeconds"].as_i64().unwrap() as u64;
    assert!(
        pre_stop + grace < termination,
        "preStop {pre_stop} + grace {grace} >= {termination}"
    );
    // Hardening.
    assert_eq!(
        spec["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let sc = &container["securityContext"];
    assert_eq!(sc["readOnlyRootFilesystem"].as_bool(), Some(true));
    assert_eq!(sc["allowPrivilegeEscalation"].as_bool(), Some(false));
    assert_eq!(sc["capabilities"]["drop"][0].as_str(), Some("ALL"));
    for kind in ["requests", "limits"] {
        assert!(
            !container["resources"][kind]["memory"].is_badvalue(),
            "resources.{kind}"
        );
        assert!(
            !container["resources"][kind]["cpu"].is_badvalue(),
            "resources.{kind}"
        );
    }
    // Every secret the config names comes from the Secret.
    let secret = of_kind(&docs, "Secret");
    for key in [
        "WXGATE_JWT_SECRET",
        "WXGATE_WECHAT_SECRET",
        "WXGATE_REDIS_URL",
    ] {
        assert!(
            !secret["stringData"][key].is_badvalue(),
            "Secret lacks {key}"
        );
    }
    assert_eq!(
        container["envFrom"][0]["secretRef"]["name"].as_str(),
        secret["metadata"]["name"].as_str()
    );

    let service = docs
        .iter()
        .find(|d| {
            d["kind"].as_str() == Some("Service")
                && d["metadata"]["name"] == deployment["metadata"]["name"]
        })
        .expect("the wxgate Service");
    assert_eq!(
        service["spec"]["selector"],
        deployment["spec"]["selector"]["matchLabels"]
    );
    let targets: Vec<&str> = service["spec"]["ports"]
        .as_vec()
        .unwrap()
        .iter()
        .filter_map(|p| p["targetPort"].as_str())
        .collect();
    assert_eq!(targets, ["http", "metrics"]);
    let hpa = of_kind(&docs, "HorizontalPodAutoscaler");
    assert_eq!(
        hpa["spec"]["scaleTargetRef"]["name"].as_str(),
        deployment["metadata"]["name"].as_str()
    );
    assert_eq!(
        hpa["spec"]["metrics"][0]["resource"]["name"].as_str(),
        Some("cpu")
    );
    let pdb = of_kind(&docs, "PodDisruptionBudget");
    assert_eq!(pdb["spec"]["selector"], deployment["spec"]["selector"]);
}

#[test]
fn the_image_and_the_unit_keep_their_hardening() {
    let dockerfile = std::fs::read_to_string(Path::new(DEPLOY).join("Dockerfile")).unwrap();
    assert!(dockerfile.matches("FROM ").count() >= 2, "multi-stage");
    let user = dockerfile
        .lines()
        .rev()
        .find_map(|l| l.strip_prefix("USER "))
        .expect("a USER");
    assert!(
        user.trim().parse::<u32>().is_ok_and(|u| u != 0),
        "numeric non-root USER: {user}"
    );
    let unit = std::fs::read_to_string(Path::new(DEPLOY).join("wxgate.service")).unwrap();
    for line in [
        "DynamicUser=yes",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "CapabilityBoundingSet=\n",
        "ExecStartPre=/usr/local/bin/wxgate check",
    ] {
        assert!(unit.contains(line), "wxgate.service lacks {line:?}");
    }
}
