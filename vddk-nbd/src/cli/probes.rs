//! What callers probe before they start a server, in nbdkit's formats:
//! `--dump-config`, `--version` (with the layers named), `PLUGIN --help`
//! (with a block per layer), `--dump-plugin`.
//!
//! `version=` in `--dump-config` is the nbdkit release whose interface
//! this server implements for the callers it knows (virt-v2v, KubeVirt
//! CDI, Forklift): the options, probes, plugins and filters they use, with
//! nbdkit 1.46's `export=` wildcard. The README lists what is claimed.

use vddk_nbd::filters::FilterInfo;
use vddk_nbd::params::ParamHelp;
use vddk_nbd::plugins::PluginInfo;

/// The nbdkit release whose interface is implemented.
pub const NBDKIT_VERSION: &str = "1.46.0";

/// This program's own version.
pub const OWN_VERSION: &str = env!("CARGO_PKG_VERSION");

/// `--version`: the server, then each layer from the client down.
pub fn version(program: &str, filters: &[&FilterInfo], plugin: Option<&PluginInfo>) -> String {
    let mut out = if program == "nbdkit" {
        format!("nbdkit {NBDKIT_VERSION} (vddk-nbd {OWN_VERSION})\n")
    } else {
        format!("vddk-nbd {OWN_VERSION}\n")
    };
    for f in filters {
        out.push_str(&format!("{} {NBDKIT_VERSION}\n", f.name));
    }
    if let Some(p) = plugin {
        out.push_str(&format!("{} {NBDKIT_VERSION}\n", p.name));
    }
    out
}

/// `--dump-config`: `key=value` lines, sorted by key.
pub fn dump_config(program: &str) -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let dir = exe
        .parent()
        .map(|d| d.display().to_string())
        .unwrap_or_default();
    let (major, minor) = {
        let mut parts = NBDKIT_VERSION.split('.');
        (parts.next().unwrap_or("1"), parts.next().unwrap_or("0"))
    };
    let rows = [
        ("binary", exe.display().to_string()),
        ("bindir", dir.clone()),
        ("exit_with_parent", "yes".into()),
        // Plugins and filters are built in: both directories are the binary's.
        ("filterdir", dir.clone()),
        ("host_cpu", std::env::consts::ARCH.into()),
        ("host_os", format!("{}-gnu", std::env::consts::OS)),
        ("name", program.into()),
        ("plugindir", dir),
        ("root_tls_certificates_dir", "/etc/pki/nbdkit".into()),
        ("selinux", "yes".into()),
        ("sysconfdir", "/etc".into()),
        ("tls", "yes".into()),
        ("version", NBDKIT_VERSION.into()),
        ("version_extra", format!("vddk-nbd-{OWN_VERSION}")),
        ("version_major", major.into()),
        ("version_minor", minor.into()),
        ("zstd", "no".into()),
    ];
    rows.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

/// One layer's block of `--help`: its name, where it is, its parameters.
fn block(kind: &str, name: &str, description: &str, params: &[ParamHelp]) -> String {
    let mut out = format!("\n{kind}: {name} ({description})\n(built into vddk-nbd)\n");
    for p in params {
        out.push_str(&format!("{:<24} {}\n", p.usage, p.help));
    }
    out
}

/// The blocks `--help` shows after the usage when layers are named.
pub fn layer_help(filters: &[&FilterInfo], plugin: Option<&PluginInfo>) -> String {
    let mut out = String::new();
    for f in filters {
        out.push_str(&block("filter", f.name, f.description, f.params));
    }
    if let Some(p) = plugin {
        out.push_str(&block("plugin", p.name, p.description, p.params));
    }
    out
}

/// The fields `--dump-plugin` prints for every plugin.
pub fn plugin_fields(p: &PluginInfo) -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    format!(
        "path={}\nname={}\nversion={NBDKIT_VERSION}\napi_version=2\n\
         max_thread_model=parallel\nthread_model=parallel\nerrno_is_preserved=1\n\
         magic_config_key={}\n",
        exe.display(),
        p.name,
        p.magic_key
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_keys_are_sorted_and_carry_the_version() {
        let c = dump_config("nbdkit");
        let keys: Vec<&str> = c
            .lines()
            .filter_map(|l| l.split_once('='))
            .map(|(k, _)| k)
            .collect();
        let mut sorted = keys.clone();
        sorted.sort_unstable();
        assert_eq!(keys, sorted);
        assert!(c.contains("\nversion=1.46.0\n"), "{c}");
        assert!(c.contains("version_major=1\nversion_minor=46\n"), "{c}");
    }

    #[test]
    fn help_blocks_match_the_callers_greps() {
        let cow = vddk_nbd::filters::find("cow").unwrap();
        let null = vddk_nbd::plugins::find("null").unwrap();
        let text = layer_help(&[cow], Some(null));
        assert!(text.contains("filter: cow ("), "{text}");
        assert!(text.contains("cow-block-size=<N>"), "{text}");
        // virt-v2v: grep 'cow-on-read=.*/PATH'
        assert!(
            text.lines()
                .any(|l| l.starts_with("cow-on-read=") && l.contains("/PATH")),
            "{text}"
        );
        let vddk = vddk_nbd::plugins::find("vddk").unwrap();
        assert!(layer_help(&[], Some(vddk)).contains("\nexport=<WILDCARD>"));
        let v = version("nbdkit", &[cow], Some(null));
        assert_eq!(
            v.lines().map(String::from).collect::<Vec<_>>(),
            [
                format!("nbdkit 1.46.0 (vddk-nbd {OWN_VERSION})"),
                "cow 1.46.0".into(),
                "null 1.46.0".into()
            ]
        );
    }
}
