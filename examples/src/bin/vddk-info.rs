//! `vddk-info`: what the VDDK library offers and, given a disk, what
//! GetInfo, GetTransportMode and the metadata say about it.

use vddk::{Disk, DiskInfo, Geometry, Vddk};
use vddk_examples::args::{Flag, Parsed, Program};
use vddk_examples::json::Object;
use vddk_examples::session;

const PROGRAM: Program = Program {
    name: "vddk-info",
    usage: "  vddk-info [OPTIONS] [libdir=DIR] [CONNECTION-PARAMETERS...] [[file=]DISK]",
    about: "Prints the VDDK library's version, path, transport modes and optional functions; \
            with a disk, also its capacity, geometry, adapter, links, parent, UUID, transport \
            mode and metadata.",
    flags: &[Flag {
        long: "json",
        short: None,
        value: None,
        help: "print one JSON object instead of text",
    }],
    notes: "Examples:
  vddk-info libdir=/opt/vmware-vix-disklib-distrib
  vddk-info libdir=/opt/vddk /var/lib/vms/web.vmdk --json
  vddk-info libdir=/opt/vddk server=esx1 user=root password=+/root/pw \\
      thumbprint=B2:31:... vm=moref=42 '[datastore1] web/web.vmdk'
",
};

fn main() {
    vddk_examples::run_program(&PROGRAM, info_main)
}

fn info_main(args: &Parsed) -> Result<(), String> {
    let params = args.params().map_err(|e| e.to_string())?;
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
    if args.has("json") {
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
                i.capacity_bytes(),
                i.capacity_sectors
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
        let mut caps = Object::new();
        for (name, present) in &self.capabilities {
            caps.raw(name, present.to_string());
        }
        let mut lib = Object::new();
        lib.str("path", &self.library)
            .num("major_version", self.major)
            .opt_str("version", self.version.as_deref())
            .str("transport_modes", &self.transports)
            .raw("capabilities", caps.finish());
        let mut o = Object::new();
        o.raw("library", lib.finish());
        if let Some(d) = &self.disk {
            let i = &d.info;
            let mut meta = Object::new();
            for (k, v) in &d.metadata {
                meta.str(k, v);
            }
            let opt_num = |n: Option<u32>| n.map_or("null".to_string(), |n| n.to_string());
            let mut disk = Object::new();
            disk.str("path", &d.path)
                .num("capacity_bytes", i.capacity_bytes())
                .num("capacity_sectors", i.capacity_sectors)
                .raw("bios_geometry", geometry_json(&i.bios_geometry))
                .raw("physical_geometry", geometry_json(&i.physical_geometry))
                .str("adapter", &i.adapter.to_string())
                .num("links", i.num_links)
                .opt_str("parent", i.parent_hint.as_deref())
                .opt_str("uuid", i.uuid.as_deref())
                .raw("logical_sector_size", opt_num(i.logical_sector_size))
                .raw("physical_sector_size", opt_num(i.physical_sector_size))
                .str("transport_mode", &d.transport)
                .raw("metadata", meta.finish())
                .opt_str("metadata_error", d.metadata_error.as_deref());
            o.raw("disk", disk.finish());
        }
        o.finish()
    }
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

fn geometry_json(g: &Geometry) -> String {
    let mut o = Object::new();
    o.num("cylinders", g.cylinders)
        .num("heads", g.heads)
        .num("sectors", g.sectors);
    o.finish()
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
