//! From the command line to the layers of the export: the `key=value`
//! words go to the filter that declares the key (the outermost first, as
//! nbdkit hands them down), the rest to the plugin; the filters are built
//! into a stack, and the plugins other than `vddk` into their exports.

use std::path::PathBuf;
use std::sync::Arc;

use vddk_nbd::backend::Backend;
use vddk_nbd::exports::ExportRegistry;
use vddk_nbd::filters::Stack;
use vddk_nbd::params::{ParamError, Params};
use vddk_nbd::plugins::file::{Cache, Fadvise, FileOptions};
use vddk_nbd::plugins::{FileBackend, MemoryBackend, NullBackend, PluginInfo};

use super::args::Options;

/// The parameters, each with its layer.
pub struct Routed {
    /// The plugin's, in order.
    pub plugin: Vec<(String, String)>,
    /// Each filter's, in `--filter` order.
    pub filters: Vec<Params>,
}

/// Sends each parameter to the outermost filter that declares its key, or
/// else to the plugin.
pub fn route(opts: &Options) -> Routed {
    let mut filters: Vec<Vec<(String, String)>> = vec![Vec::new(); opts.filters.len()];
    let mut plugin = Vec::new();
    for (k, v) in &opts.params {
        let owner = opts
            .filters
            .iter()
            .position(|f| f.params.iter().any(|p| p.key == k));
        match owner {
            Some(i) => filters[i].push((k.clone(), v.clone())),
            None => plugin.push((k.clone(), v.clone())),
        }
    }
    Routed {
        plugin,
        filters: filters.into_iter().map(Params::new).collect(),
    }
}

/// The filters configured from their parameters.
pub fn stack(opts: &Options, routed: &Routed) -> Result<Stack, String> {
    let mut built = Vec::with_capacity(opts.filters.len());
    for (f, p) in opts.filters.iter().zip(&routed.filters) {
        built.push((f.configure)(p).map_err(|e| format!("--filter={}: {e}", f.name))?);
    }
    let flag = |scope: &str, name: &str| {
        opts.debug_flags
            .iter()
            .rev()
            .find(|f| f.scope == scope && f.name == name)
            .is_some_and(|f| f.value != "0")
    };
    let plugin = opts.plugin.name;
    Ok(Stack::new(built)
        .trace_requests(flag("nbdkit", "backend.datapath"))
        .trace_plugin(flag(plugin, "datapath").then_some(plugin)))
}

/// Refuses keys the plugin does not take, naming those it does.
fn check_keys(plugin: &PluginInfo, p: &Params) -> Result<(), ParamError> {
    for (k, _) in p.pairs() {
        if !plugin.params.iter().any(|h| h.key == k) {
            let valid: Vec<&str> = plugin.params.iter().map(|h| h.key).collect();
            return Err(ParamError(format!(
                "unknown parameter '{k}' for the {} plugin; its parameters are: {}",
                plugin.name,
                valid.join(", ")
            )));
        }
    }
    Ok(())
}

fn size(p: &Params, required: bool) -> Result<u64, ParamError> {
    match p.size("size")? {
        Some(n) => Ok(n),
        None if required => Err(ParamError("size=<SIZE> is required".into())),
        None => Ok(0),
    }
}

fn file_options(p: &Params, read_only: bool) -> Result<FileOptions, ParamError> {
    let cache = match p.get("cache") {
        None | Some("default") => Cache::Default,
        Some("none") => Cache::None,
        Some(v) => return Err(ParamError(format!("cache={v}: use default or none"))),
    };
    let fadvise = match p.get("fadvise") {
        None | Some("normal") => Fadvise::Normal,
        Some("random") => Fadvise::Random,
        Some("sequential") => Fadvise::Sequential,
        Some(v) => {
            return Err(ParamError(format!(
                "fadvise={v}: use normal, random or sequential"
            )))
        }
    };
    Ok(FileOptions {
        read_only,
        cache,
        fadvise,
    })
}

/// The exports of the `file`, `null` and `memory` plugins.
pub fn local_exports(
    opts: &Options,
    p: &Params,
    read_only: bool,
) -> Result<Arc<ExportRegistry>, String> {
    let plugin = opts.plugin;
    check_keys(plugin, p).map_err(|e| e.to_string())?;
    let backend: Arc<dyn Backend> = match plugin.name {
        "null" => Arc::new(NullBackend::new(size(p, false).map_err(|e| e.to_string())?)),
        // Any byte range, as nbdkit's memory plugin, which advertises no
        // minimum: `nbdkit memory 1` is one byte that strict clients read.
        "memory" => Arc::new(
            MemoryBackend::with_options(size(p, true).map_err(|e| e.to_string())?, read_only)
                .min_block(1),
        ),
        "file" => {
            let fo = file_options(p, read_only).map_err(|e| e.to_string())?;
            match (p.get("file"), p.get("dir")) {
                (Some(_), Some(_)) => {
                    return Err("file= and dir= cannot be used together".into());
                }
                (None, Some(dir)) => {
                    let dir = PathBuf::from(dir);
                    let mut reg = ExportRegistry::new();
                    reg.set_directory(
                        dir,
                        Box::new(move |path: &str| {
                            let b: Arc<dyn Backend> =
                                Arc::new(FileBackend::open(std::path::Path::new(path), fo)?);
                            Ok(b)
                        }),
                    )
                    .map_err(|e| e.to_string())?;
                    return Ok(Arc::new(reg));
                }
                (Some(f), None) => {
                    Arc::new(FileBackend::open(&PathBuf::from(f), fo).map_err(|e| e.to_string())?)
                }
                (None, None) => {
                    return Err("you must supply either [file=]<FILENAME> or dir=<DIRNAME> after the plugin name".into());
                }
            }
        }
        other => return Err(format!("the {other} plugin is served elsewhere")),
    };
    Ok(Arc::new(ExportRegistry::single(
        opts.export_name.clone(),
        None,
        backend,
    )))
}
