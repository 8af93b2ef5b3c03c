//! `vddk-info`: what the VDDK library offers and, given a disk, what
//! GetInfo, GetTransportMode and the metadata say about it.

use serde::{Serialize, Serializer};
use vddk::{Disk, DiskInfo, Geometry, Vddk};
use vddk_examples::cli;
use vddk_examples::session;

vddk_examples::program! {
    #[command(
        name = "vddk-info",
        override_usage = "vddk-info [OPTIONS] [libdir=DIR] [CONNECTION-PARAMETERS...] [[file=]DISK]",
        about = "Prints the VDDK library's version, path, transport modes and optional functions; \
                 with a disk, also its capacity, geometry, adapter, links, parent, UUID, transport \
                 mode and metadata.",
        after_help = cli::after_help(EXAMPLES)
    )]
    struct Args {
        /// Print one JSON object instead of text
        #[arg(long)]
        json: bool,
    }
}

const EXAMPLES: &str = "  vddk-info libdir=/opt/vmware-vix-disklib-distrib
  vddk-info libdir=/opt/vddk /var/lib/vms/web.vmdk --json
  vddk-info libdir=/opt/vddk server=esx1 user=root password=+/root/pw \\
      thumbprint=B2:31:... vm=moref=42 '[datastore1] web/web.vmdk'
";

fn main() {
    vddk_examples::run_program(info_main)
}

fn info_main(args: &Args) -> Result<(), String> {
    let params = args.common.params()?;
    if params.file.is_some() {
        session::validate(&params).map_err(|e| e.to_string())?;
    }
    let lib = session::load(&params).map_err(|e| e.to_string())?;
    let disk = match params.file {
        None => None,
        Some(_) => Some(session::open_with(lib.clone(), &params, true).map_err(|e| e.to_string())?),
    };
    let report = match &disk {
        None => Report::library(&lib),
        Some(s) => Report::disk(&lib, &s.path, &s.disk).map_err(|e| e.to_string())?,
    };
    if args.json {
        println!("{}", report.json());
    } else {
        print!("{}", report.text());
    }
    Ok(())
}

struct DiskReport {
    path: String,
    info: DiskInfo,
    transport: String,
    metadata: Vec<(String, String)>,
    metadata_error: Option<String>,
}

struct Report {
    library: String,
    major: u32,
    version: Option<String>,
    transports: String,
    capabilities: Vec<(&'static str, bool)>,
    disk: Option<DiskReport>,
}

impl Report {
    fn library(lib: &Vddk) -> Report {
        Report {
            library: lib.library_path().display().to_string(),
            major: lib.major_version(),
            version: lib.version().map(str::to_string),
            transports: lib.transport_modes(),
            capabilities: lib.capabilities().iter().collect(),
            disk: None,
        }
    }

    fn disk(lib: &Vddk, path: &str, disk: &Disk) -> Result<Report, String> {
        let info = disk
            .info()
            .map_err(|e| format!("cannot read the disk's information: {e}"))?;
        let (metadata, metadata_error) = match read_metadata(disk) {
            Ok(m) => (m, None),
            Err(e) => (Vec::new(), Some(e)),
        };
        Ok(Report {
            disk: Some(DiskReport {
                path: path.to_string(),
                info,
                transport: disk.transport_mode(),
                metadata,
                metadata_error,
            }),
            ..Report::library(lib)
        })
    }

    fn text(&self) -> String {
        let mut s = String::new();
        s.push_str(&format!("library: {}\n", self.library));
        s.push_str(&format!("major version: {}\n", self.major));
        if let Some(v) = &self.version {
            s.push_str(&format!("version: {v}\n"));
        }
        s.push_str(&format!("transport modes: {}\n", self.transports));
        let have: Vec<&str> = self
            .capabilities
            .iter()
            .filter(|c| c.1)
            .map(|c| c.0)
            .collect();
        let lack: Vec<&str> = self
            .capabilities
            .iter()
            .filter(|c| !c.1)
            .map(|c| c.0)
            .collect();
        s.push_str(&format!("optional functions: {}\n", list(&have)));
        s.push_str(&format!("missing functions: {}\n", list(&lack)));
        if let Some(d) = &self.disk {
            let i = &d.info;
            s.push_str(&format!("disk: {}\n", d.path));
            s.push_str(&format!(
                "capacity: {} bytes ({} sectors)\n",
                i.capacity,
                i.capacity / vddk::SECTOR_SIZE
            ));
            s.push_str(&format!("bios geometry: {}\n", chs(&i.bios_geometry)));
            s.push_str(&format!(
                "physical geometry: {}\n",
                chs(&i.physical_geometry)
            ));
            s.push_str(&format!("adapter: {}\n", i.adapter));
            s.push_str(&format!("links: {}\n", i.num_links));
            s.push_str(&format!(
                "parent: {}\n",
                i.parent_hint.as_deref().unwrap_or("-")
            ));
            s.push_str(&format!("uuid: {}\n", i.uuid.as_deref().unwrap_or("-")));
            if let Some(n) = i.logical_sector_size {
                s.push_str(&format!("logical sector size: {n}\n"));
            }
            if let Some(n) = i.physical_sector_size {
                s.push_str(&format!("physical sector size: {n}\n"));
            }
            s.push_str(&format!("transport mode: {}\n", d.transport));
            match &d.metadata_error {
                Some(e) => s.push_str(&format!("metadata: unavailable ({e})\n")),
                None => {
                    s.push_str("metadata:\n");
                    for (k, v) in &d.metadata {
                        s.push_str(&format!("  {k} = {v}\n"));
                    }
                }
            }
        }
        s
    }

    fn json(&self) -> String {
        let library = JsonLibrary {
            path: &self.library,
            major_version: self.major,
            version: self.version.as_deref(),
            transport_modes: &self.transports,
            capabilities: &self.capabilities,
        };
        let disk = self.disk.as_ref().map(|d| {
            let i = &d.info;
            JsonDisk {
                path: &d.path,
                capacity_bytes: i.capacity,
                capacity_sectors: i.capacity / vddk::SECTOR_SIZE,
                bios_geometry: JsonGeometry::from(&i.bios_geometry),
                physical_geometry: JsonGeometry::from(&i.physical_geometry),
                adapter: i.adapter.to_string(),
                links: i.num_links,
                parent: i.parent_hint.as_deref(),
                uuid: i.uuid.as_deref(),
                logical_sector_size: i.logical_sector_size,
                physical_sector_size: i.physical_sector_size,
                transport_mode: &d.transport,
                metadata: &d.metadata,
                metadata_error: d.metadata_error.as_deref(),
            }
        });
        serde_json::to_string(&JsonReport { library, disk }).expect("the report serialises")
    }
}

/// `--json`'s document: `library`, and `disk` when one was opened.
#[derive(Serialize)]
struct JsonReport<'a> {
    library: JsonLibrary<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    disk: Option<JsonDisk<'a>>,
}

#[derive(Serialize)]
struct JsonLibrary<'a> {
    path: &'a str,
    major_version: u32,
    version: Option<&'a str>,
    transport_modes: &'a str,
    /// Function name to presence, in the library's order.
    #[serde(serialize_with = "ordered_map")]
    capabilities: &'a [(&'static str, bool)],
}

#[derive(Serialize)]
struct JsonDisk<'a> {
    path: &'a str,
    capacity_bytes: u64,
    capacity_sectors: u64,
    bios_geometry: JsonGeometry,
    physical_geometry: JsonGeometry,
    adapter: String,
    links: i32,
    parent: Option<&'a str>,
    uuid: Option<&'a str>,
    logical_sector_size: Option<u32>,
    physical_sector_size: Option<u32>,
    transport_mode: &'a str,
    /// Key to value, in the disk's order.
    #[serde(serialize_with = "ordered_map")]
    metadata: &'a [(String, String)],
    metadata_error: Option<&'a str>,
}

#[derive(Serialize)]
struct JsonGeometry {
    cylinders: u32,
    heads: u32,
    sectors: u32,
}

impl From<&Geometry> for JsonGeometry {
    fn from(g: &Geometry) -> JsonGeometry {
        JsonGeometry {
            cylinders: g.cylinders,
            heads: g.heads,
            sectors: g.sectors,
        }
    }
}

/// Pairs as a JSON object, keeping their order.
fn ordered_map<S: Serializer, K: Serialize, V: Serialize>(
    pairs: &[(K, V)],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_map(pairs.iter().map(|(k, v)| (k, v)))
}

fn list(names: &[&str]) -> String {
    if names.is_empty() {
        "-".into()
    } else {
        names.join(" ")
    }
}

fn chs(g: &Geometry) -> String {
    format!("{}/{}/{} (C/H/S)", g.cylinders, g.heads, g.sectors)
}

fn read_metadata(disk: &Disk) -> Result<Vec<(String, String)>, String> {
    let keys = disk.metadata_keys().map_err(|e| e.to_string())?;
    keys.into_iter()
        .map(|k| {
            let v = disk
                .metadata_get(&k)
                .map_err(|e| format!("reading metadata key {k}: {e}"))?;
            Ok((k, v))
        })
        .collect()
}
