//! Facts about the local machine that collectors attach to telemetry records:
//! the operating system ([`os_facts`]) and the virtual environment the agent runs in
//! ([`virtual_environment`]). The country is `country`'s concern.
//!
//! Everything is derived from local state only: files under `/sys`, `/proc`, `/etc`
//! and `/run`, environment variables, the CPUID instruction, and `sysinfo`'s reading
//! of the OS release files. This module must never:
//!
//! - touch the network (no DNS, no HTTP, no cloud metadata endpoints);
//! - geolocate by IP address, or report a location finer than a country;
//! - collect personal data or machine identifiers (user or host names, serial
//!   numbers, UUIDs, MAC addresses, paths in home directories);
//! - need root, or fail hard: a missing or unreadable source just means "unknown".

use std::fs;
use std::io::{BufRead, BufReader};
use std::path::Path;

use sysinfo::System;

/// Operating system facts.
///
/// Attached to records so reports can be broken down by platform. The values
/// identify the OS build only, never the machine or its user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OsFacts {
    /// OS family in lowercase, as Rust names it (`std::env::consts::OS`):
    /// "linux", "windows", "macos", "freebsd", ...
    pub os_type: String,
    /// OS release such as "12", "24.04" or "15.1.1"; the kernel version when the
    /// release is unknown (e.g. rolling distributions); "unknown" if neither is.
    pub os_version: String,
    /// Distribution or edition name such as "Debian GNU/Linux", "Ubuntu" or
    /// "Windows"; `None` when unknown.
    pub os_edition: Option<String>,
    /// Word size of the OS in bits, 64 or 32. Taken from the pointer width the
    /// agent was compiled for (`usize::BITS`), which matches the OS except when a
    /// 32-bit agent build runs on a 64-bit OS; that case reports 32.
    pub os_bitness: i64,
}

/// Collects [`OsFacts`]. Never fails: unknown parts fall back as documented on
/// the fields. Reads a few small files on each call, so callers may cache it.
pub fn os_facts() -> OsFacts {
    OsFacts {
        os_type: std::env::consts::OS.to_owned(),
        os_version: non_empty(System::os_version().ok())
            .or_else(|| non_empty(System::kernel_version().ok()))
            .unwrap_or_else(|| "unknown".to_owned()),
        os_edition: non_empty(System::name().ok()),
        os_bitness: i64::from(usize::BITS),
    }
}

/// Name of the virtual environment this machine runs in, detected locally,
/// in the identifiers systemd-detect-virt uses ("none" on bare metal).
///
/// Lets reports separate behaviour on containers and VMs from physical machines.
/// Containers take precedence over VMs (a container inside a VM reports the
/// container), as `systemd-detect-virt` does without `--vm`. The possible values
/// are "docker", "podman", "lxc", "wsl", "container-other", "kvm", "qemu",
/// "vmware", "oracle" (VirtualBox), "microsoft" (Hyper-V), "xen", "amazon",
/// "google", "parallels", "bochs", "vm-other" and "none". Environments systemd
/// names but this list lacks fold into "container-other" (systemd-nspawn, rkt,
/// proot, ...) or "vm-other" (bhyve, ACRN, Apple, ...); "lxc-libvirt" is "lxc".
pub fn virtual_environment() -> String {
    detect(&VirtProbe::read()).to_owned()
}

/// Raw local evidence for [`detect`]; `None`/`false` means absent or unreadable.
#[derive(Debug, Default, Clone)]
struct VirtProbe {
    /// `/sys/class/dmi/id/*` (only vendor and product names, never serials/UUIDs).
    sys_vendor: Option<String>,
    product_name: Option<String>,
    board_vendor: Option<String>,
    bios_vendor: Option<String>,
    product_version: Option<String>,
    /// The first `flags` line of `/proc/cpuinfo`.
    cpu_flags: Option<String>,
    /// Hypervisor signature from CPUID leaf 0x4000_0000 (e.g. "KVMKVMKVM"), read
    /// only when CPUID leaf 1 reports a hypervisor.
    cpuid_signature: Option<String>,
    /// CPUID says this is the Hyper-V root partition, i.e. the host itself (as on
    /// Windows with virtualization-based security), not a guest.
    hyperv_root: bool,
    /// `/proc/xen` exists, and the content of `/proc/xen/capabilities`.
    proc_xen: bool,
    xen_capabilities: Option<String>,
    /// `/sys/hypervisor/type`.
    hypervisor_type: Option<String>,
    /// `/.dockerenv` and `/run/.containerenv` (podman) exist.
    dockerenv: bool,
    containerenv: bool,
    /// Container manager names from `/run/host/container-manager` and `/run/systemd/container`.
    host_container_manager: Option<String>,
    systemd_container: Option<String>,
    /// `/proc/1/cgroup`.
    pid1_cgroup: Option<String>,
    /// `/proc/sys/kernel/osrelease`.
    kernel_osrelease: Option<String>,
}

impl VirtProbe {
    /// Reads every source; none needs root, and failures leave the field empty.
    fn read() -> Self {
        let dmi = |name: &str| read_trimmed(Path::new("/sys/class/dmi/id").join(name));
        let (cpuid_signature, hyperv_root) = cpuid_hypervisor();
        Self {
            sys_vendor: dmi("sys_vendor"),
            product_name: dmi("product_name"),
            board_vendor: dmi("board_vendor"),
            bios_vendor: dmi("bios_vendor"),
            product_version: dmi("product_version"),
            cpu_flags: read_cpu_flags(),
            cpuid_signature,
            hyperv_root,
            proc_xen: Path::new("/proc/xen").exists(),
            xen_capabilities: read_trimmed("/proc/xen/capabilities"),
            hypervisor_type: read_trimmed("/sys/hypervisor/type"),
            dockerenv: Path::new("/.dockerenv").exists(),
            containerenv: Path::new("/run/.containerenv").exists(),
            host_container_manager: read_trimmed("/run/host/container-manager"),
            systemd_container: read_trimmed("/run/systemd/container"),
            pid1_cgroup: read_trimmed("/proc/1/cgroup"),
            kernel_osrelease: read_trimmed("/proc/sys/kernel/osrelease"),
        }
    }
}

/// Classifies a probe; pure so that it can be tested without a filesystem.
fn detect(probe: &VirtProbe) -> &'static str {
    detect_container(probe).unwrap_or_else(|| detect_vm(probe))
}

fn detect_container(p: &VirtProbe) -> Option<&'static str> {
    // WSL's documented marker: "...-Microsoft" (WSL1) or "...-microsoft-standard-WSL2".
    let release = p
        .kernel_osrelease
        .as_deref()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if release.contains("microsoft") || release.contains("wsl") {
        return Some("wsl");
    }
    let named = [&p.host_container_manager, &p.systemd_container]
        .into_iter()
        .flatten()
        .filter_map(|s| s.lines().next().map(str::trim))
        .find(|s| !s.is_empty());
    if let Some(name) = named {
        return Some(match name {
            "docker" => "docker",
            "podman" => "podman",
            "lxc" | "lxc-libvirt" => "lxc",
            "wsl" => "wsl",
            // "oci" names a format, not a manager: look for a manager's marker file.
            "oci" => container_files(p).unwrap_or("container-other"),
            _ => "container-other",
        });
    }
    container_files(p).or_else(|| p.pid1_cgroup.as_deref().and_then(container_from_cgroup))
}

fn container_files(p: &VirtProbe) -> Option<&'static str> {
    if p.containerenv {
        Some("podman")
    } else if p.dockerenv {
        Some("docker")
    } else {
        None
    }
}

/// Hints in the cgroup path of PID 1 (lines look like "12:memory:/docker/<id>").
fn container_from_cgroup(cgroup: &str) -> Option<&'static str> {
    let has = |pred: fn(&str) -> bool| {
        cgroup
            .lines()
            .filter_map(|line| line.splitn(3, ':').nth(2))
            .flat_map(|path| path.split('/'))
            .any(pred)
    };
    if has(|s| s.starts_with("libpod")) {
        Some("podman")
    } else if has(|s| s == "docker" || s.starts_with("docker-")) {
        Some("docker")
    } else if has(|s| s == "lxc" || s.starts_with("lxc.payload")) {
        Some("lxc")
    } else if has(|s| s.starts_with("kubepods")) {
        Some("container-other")
    } else {
        None
    }
}

/// VM detection in systemd's order: DMI vendors that run on other hypervisors
/// first, then Xen, CPUID, the remaining DMI vendors, and `/sys/hypervisor`.
fn detect_vm(p: &VirtProbe) -> &'static str {
    let dmi = dmi_vendor(p);
    if let Some(id @ ("oracle" | "xen" | "amazon" | "parallels" | "google")) = dmi {
        return id;
    }
    let xen_dom0 = p
        .xen_capabilities
        .as_deref()
        .is_some_and(|caps| caps.split(',').any(|c| c.trim() == "control_d"));
    if p.proc_xen && !xen_dom0 {
        return "xen";
    }
    let mut hyperv = false;
    let mut other = p
        .cpu_flags
        .as_deref()
        .is_some_and(|flags| flags.split_whitespace().any(|f| f == "hypervisor"));
    match p
        .cpuid_signature
        .as_deref()
        .map(|s| s.trim_end_matches('\0'))
    {
        None => {}
        Some("KVMKVMKVM" | "Linux KVM Hv") => return "kvm",
        Some("TCGTCGTCGTCG") => return "qemu",
        Some("VMwareVMware") => return "vmware",
        Some("XenVMMXenVMM") => return "xen",
        // QEMU can also present Hyper-V's signature, so only a fallback.
        Some("Microsoft Hv") if p.hyperv_root => other = false,
        Some("Microsoft Hv") => hyperv = true,
        Some(_) => other = true,
    }
    if !(p.proc_xen && xen_dom0) {
        match dmi {
            Some("vm-other") => other = true,
            Some(id) => return id,
            None => {}
        }
        match p.hypervisor_type.as_deref().map(str::trim) {
            Some("xen") => return "xen",
            Some(t) if !t.is_empty() => other = true,
            _ => {}
        }
    }
    if hyperv {
        "microsoft"
    } else if other {
        "vm-other"
    } else {
        "none"
    }
}

/// systemd's DMI vendor table: first prefix match over the fields in its order.
fn dmi_vendor(p: &VirtProbe) -> Option<&'static str> {
    const VENDORS: &[(&str, &str)] = &[
        ("KVM", "kvm"),
        ("OpenStack", "kvm"),
        ("KubeVirt", "kvm"),
        ("Amazon EC2", "amazon"),
        ("QEMU", "qemu"),
        ("VMware", "vmware"),
        ("VMW", "vmware"),
        ("innotek GmbH", "oracle"),
        ("VirtualBox", "oracle"),
        ("Oracle Corporation", "oracle"),
        ("Xen", "xen"),
        ("Bochs", "bochs"),
        ("Parallels", "parallels"),
        ("BHYVE", "vm-other"),
        ("Hyper-V", "microsoft"),
        ("Apple Virtualization", "vm-other"),
        ("Google Compute Engine", "google"),
    ];
    let fields = [
        &p.product_name,
        &p.sys_vendor,
        &p.board_vendor,
        &p.bios_vendor,
        &p.product_version,
    ];
    let found = fields.into_iter().flatten().find_map(|value| {
        let value = value.trim();
        VENDORS
            .iter()
            .find(|(prefix, _)| value.starts_with(prefix))
            .map(|&(_, id)| id)
    });
    match found {
        // EC2 bare-metal instances keep the vendor but name the product "*.metal".
        Some("amazon") if is_ec2_metal(field(&p.product_name)) => None,
        Some(id) => Some(id),
        None => (field(&p.sys_vendor) == "Microsoft Corporation"
            && field(&p.product_name) == "Virtual Machine")
            .then_some("microsoft"),
    }
}

fn field(value: &Option<String>) -> &str {
    value.as_deref().map(str::trim).unwrap_or_default()
}

fn is_ec2_metal(product_name: &str) -> bool {
    product_name
        .split_once(".metal")
        .is_some_and(|(_, rest)| rest.is_empty() || rest.starts_with('-'))
}

/// Reads a small text file, trimmed; `None` if missing, unreadable or blank.
pub(super) fn read_trimmed(path: impl AsRef<Path>) -> Option<String> {
    let bytes = fs::read(path).ok()?;
    non_empty(Some(String::from_utf8_lossy(&bytes).into_owned()))
}

pub(super) fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

fn read_cpu_flags() -> Option<String> {
    let file = fs::File::open("/proc/cpuinfo").ok()?;
    BufReader::new(file)
        .lines()
        .map_while(Result::ok)
        .find_map(|line| {
            let (key, value) = line.split_once(':')?;
            (key.trim() == "flags").then(|| value.trim().to_owned())
        })
}

/// CPUID hypervisor signature and whether we are Hyper-V's root partition.
/// `__cpuid` is a safe function; nothing here needs `unsafe`.
#[cfg(target_arch = "x86_64")]
fn cpuid_hypervisor() -> (Option<String>, bool) {
    use std::arch::x86_64::__cpuid;
    if __cpuid(1).ecx & (1 << 31) == 0 {
        return (None, false);
    }
    let leaf = __cpuid(0x4000_0000);
    let bytes: Vec<u8> = [leaf.ebx, leaf.ecx, leaf.edx]
        .iter()
        .flat_map(|reg| reg.to_le_bytes())
        .collect();
    let signature = String::from_utf8_lossy(&bytes)
        .trim_end_matches('\0')
        .to_owned();
    // Only the root partition holds the CreatePartitions privilege (leaf 0x4000_0003, EBX bit 0).
    let root =
        signature == "Microsoft Hv" && leaf.eax >= 0x4000_0003 && __cpuid(0x4000_0003).ebx & 1 == 1;
    (Some(signature), root)
}

#[cfg(not(target_arch = "x86_64"))]
fn cpuid_hypervisor() -> (Option<String>, bool) {
    (None, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VIRT_IDS: &str = "docker podman lxc wsl container-other kvm qemu vmware oracle microsoft \
        xen amazon google parallels bochs vm-other none";

    /// `expected | probe` per line. Probe items are `field=value` or a bare boolean
    /// field, separated by "; ". `\n` and `\0` in values are decoded.
    const BARE_METAL_CASES: &str = r"
none |
none | vendor=Dell Inc.; product=XPS 13 9310; flags=fpu vme de
none | cgroup=0::/init.scope; osrelease=6.1.0-18-amd64
none | vendor=Microsoft Corporation; product=Surface Laptop 5
none | vendor=Google; product=Pixelbook
none | vendor=Amazon EC2; product=m5.metal
none | cgroup=0::/user.slice/dockerd-rootless.service
none | cpuid=Microsoft Hv; hv_root
none | xen; xen_caps=control_d
none | xen; xen_caps=control_d; vendor=QEMU";

    const CONTAINER_CASES: &str = r"
docker          | dockerenv
podman          | containerenv; dockerenv
lxc             | container=lxc\n; dockerenv
lxc             | container=lxc-libvirt
podman          | container=podman
container-other | container=systemd-nspawn
docker          | container=oci; dockerenv
container-other | container=oci
docker          | host_manager=docker; container=lxc
docker          | cgroup=12:memory:/docker/0123abcd\n0::/docker/0123abcd
docker          | cgroup=0::/system.slice/docker-0123.scope
podman          | cgroup=1:name=systemd:/machine.slice/libpod-0123.scope
lxc             | cgroup=0::/lxc.payload.web1
container-other | cgroup=11:cpu:/kubepods/burstable/pod12/0123
wsl             | osrelease=4.4.0-19041-Microsoft; cpuid=Microsoft Hv; flags=hypervisor
wsl             | osrelease=5.15.153.1-microsoft-standard-WSL2
docker          | dockerenv; vendor=QEMU; cpuid=KVMKVMKVM; flags=hypervisor";

    const VM_CASES: &str = r"
qemu      | vendor=QEMU; product=Standard PC (Q35 + ICH9, 2009)
vmware    | vendor=VMware, Inc.; product=VMware Virtual Platform
oracle    | vendor=innotek GmbH; product=VirtualBox
oracle    | vendor=Acme; board=Oracle Corporation
xen       | vendor=Xen; product=HVM domU
amazon    | vendor=Amazon EC2; product=m5.large
google    | vendor=Google; product=Google Compute Engine
parallels | vendor=Parallels Software International Inc.
bochs     | vendor=Bochs; product=Bochs
microsoft | vendor=Microsoft Corporation; product=Virtual Machine
microsoft | vendor=Acme; version=Hyper-V UEFI Release v4.1
kvm       | vendor=Red Hat; product=KVM
vm-other  | vendor=BHYVE; product=BHYVE
kvm       | cpuid=KVMKVMKVM\0\0\0; vendor=QEMU; flags=fpu hypervisor
qemu      | cpuid=TCGTCGTCGTCG; vendor=QEMU
vmware    | cpuid=VMwareVMware
kvm       | cpuid=KVMKVMKVM; vendor=Hetzner; flags=fpu hypervisor
oracle    | cpuid=KVMKVMKVM; vendor=innotek GmbH
qemu      | cpuid=Microsoft Hv; vendor=QEMU
microsoft | cpuid=Microsoft Hv; vendor=Acme; flags=fpu hypervisor
vm-other  | cpuid=ACRNACRNACRN
vm-other  | flags=fpu vme hypervisor
vm-other  | hv_type=kvm
xen       | hv_type=xen\n
xen       | xen
xen       | xen; xen_caps=
kvm       | xen; xen_caps=control_d; cpuid=KVMKVMKVM";

    fn probe(spec: &str) -> VirtProbe {
        let mut p = VirtProbe::default();
        for item in spec.split("; ").filter(|i| !i.trim().is_empty()) {
            let (key, value) = item.split_once('=').unwrap_or((item.trim(), ""));
            let v = Some(value.replace(r"\n", "\n").replace(r"\0", "\0"));
            match key {
                "vendor" => p.sys_vendor = v,
                "product" => p.product_name = v,
                "board" => p.board_vendor = v,
                "version" => p.product_version = v,
                "flags" => p.cpu_flags = v,
                "cpuid" => p.cpuid_signature = v,
                "hv_root" => p.hyperv_root = true,
                "xen" => p.proc_xen = true,
                "xen_caps" => p.xen_capabilities = v,
                "hv_type" => p.hypervisor_type = v,
                "dockerenv" => p.dockerenv = true,
                "containerenv" => p.containerenv = true,
                "host_manager" => p.host_container_manager = v,
                "container" => p.systemd_container = v,
                "cgroup" => p.pid1_cgroup = v,
                "osrelease" => p.kernel_osrelease = v,
                other => panic!("unknown probe field {other:?}"),
            }
        }
        p
    }

    fn check_virt(cases: &str) {
        for line in cases.lines().filter(|l| !l.trim().is_empty()) {
            let (want, spec) = line.split_once('|').expect("case line has '|'");
            assert_eq!(detect(&probe(spec.trim())), want.trim(), "case: {line}");
        }
    }

    #[test]
    fn virt_bare_metal() {
        check_virt(BARE_METAL_CASES);
    }

    #[test]
    fn virt_containers_win_over_vms() {
        check_virt(CONTAINER_CASES);
    }

    #[test]
    fn virt_vms_in_systemd_order() {
        check_virt(VM_CASES);
    }

    #[test]
    fn real_machine_invariants() {
        let os = os_facts();
        assert!(!os.os_type.is_empty());
        assert_eq!(os.os_type, os.os_type.to_lowercase());
        assert!(matches!(os.os_bitness, 32 | 64), "{}", os.os_bitness);
        assert!(!os.os_version.trim().is_empty());
        assert!(os.os_edition.is_none_or(|e| !e.trim().is_empty()));

        let virt = virtual_environment();
        assert!(VIRT_IDS.split_whitespace().any(|id| id == virt), "{virt}");

        if let Some(cc) = super::super::country::country_code() {
            let two_upper = cc.len() == 2 && cc.bytes().all(|b| b.is_ascii_uppercase());
            assert!(two_upper, "{cc}");
        }
    }
}
