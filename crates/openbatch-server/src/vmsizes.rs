//! The VM size table: Azure size names users already write, mapped to cores, memory and GPUs.
//!
//! Names match case-insensitively (`STANDARD_DS1_V2` = `Standard_DS1_v2`). Local nodes do not
//! enforce these limits on processes; the sizes drive slots defaults, the `AZ_BATCH_*`
//! environment and what the API reports. Add or override sizes with `[[vm_sizes]]` in the
//! server config.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VmSize {
    pub name: String,
    pub cores: u32,
    pub memory_mib: u64,
    #[serde(default)]
    pub gpus: u32,
    #[serde(default)]
    pub rdma: bool,
}

/// (name, vCPUs, memory GiB, GPUs, RDMA) from the Azure VM size documentation.
const BUILTIN: &[(&str, u32, f64, u32, bool)] = &[
    ("Standard_A1_v2", 1, 2.0, 0, false),
    ("Standard_A2_v2", 2, 4.0, 0, false),
    ("Standard_A4_v2", 4, 8.0, 0, false),
    ("Standard_A8_v2", 8, 16.0, 0, false),
    ("Standard_D1_v2", 1, 3.5, 0, false),
    ("Standard_D2_v2", 2, 7.0, 0, false),
    ("Standard_D3_v2", 4, 14.0, 0, false),
    ("Standard_D4_v2", 8, 28.0, 0, false),
    ("Standard_DS1_v2", 1, 3.5, 0, false),
    ("Standard_DS2_v2", 2, 7.0, 0, false),
    ("Standard_DS3_v2", 4, 14.0, 0, false),
    ("Standard_DS4_v2", 8, 28.0, 0, false),
    ("Standard_D2s_v3", 2, 8.0, 0, false),
    ("Standard_D4s_v3", 4, 16.0, 0, false),
    ("Standard_D8s_v3", 8, 32.0, 0, false),
    ("Standard_D16s_v3", 16, 64.0, 0, false),
    ("Standard_D2_v3", 2, 8.0, 0, false),
    ("Standard_D4_v3", 4, 16.0, 0, false),
    ("Standard_D2s_v5", 2, 8.0, 0, false),
    ("Standard_D4s_v5", 4, 16.0, 0, false),
    ("Standard_D2ds_v5", 2, 8.0, 0, false),
    ("Standard_D4ds_v5", 4, 16.0, 0, false),
    ("Standard_E2s_v3", 2, 16.0, 0, false),
    ("Standard_E4s_v3", 4, 32.0, 0, false),
    ("Standard_F2s_v2", 2, 4.0, 0, false),
    ("Standard_F4s_v2", 4, 8.0, 0, false),
    ("Standard_F8s_v2", 8, 16.0, 0, false),
    ("Standard_NC6", 6, 56.0, 1, false),
    ("Standard_NC12", 12, 112.0, 2, false),
    ("Standard_NC24", 24, 224.0, 4, false),
    ("Standard_NC24r", 24, 224.0, 4, true),
    ("Standard_NC6s_v3", 6, 112.0, 1, false),
    ("Standard_NC12s_v3", 12, 224.0, 2, false),
    ("Standard_NC24s_v3", 24, 448.0, 4, false),
    ("Standard_NC24rs_v3", 24, 448.0, 4, true),
    ("Standard_NC4as_T4_v3", 4, 28.0, 1, false),
    ("Standard_NC24ads_A100_v4", 24, 220.0, 1, false),
    ("Standard_ND40rs_v2", 40, 672.0, 8, true),
    ("Standard_ND96asr_v4", 96, 900.0, 8, true),
    ("Standard_NV6", 6, 56.0, 1, false),
    ("Standard_H8", 8, 56.0, 0, false),
    ("Standard_H16", 16, 112.0, 0, false),
    ("Standard_H16r", 16, 112.0, 0, true),
    ("Standard_H16mr", 16, 224.0, 0, true),
    ("Standard_HB120rs_v3", 120, 448.0, 0, true),
    ("Standard_HC44rs", 44, 352.0, 0, true),
];

/// Look a size up: config entries first, then the built-in table.
pub fn lookup(name: &str, extra: &[VmSize]) -> Option<VmSize> {
    if let Some(v) = extra.iter().find(|v| v.name.eq_ignore_ascii_case(name)) {
        return Some(v.clone());
    }
    BUILTIN
        .iter()
        .find(|(n, ..)| n.eq_ignore_ascii_case(name))
        .map(|(n, cores, mem, gpus, rdma)| VmSize {
            name: n.to_string(),
            cores: *cores,
            memory_mib: (*mem * 1024.0) as u64,
            gpus: *gpus,
            rdma: *rdma,
        })
}

/// The message for an unknown size: what was asked, and how to add it.
pub fn unknown_message(name: &str) -> String {
    format!(
        "The VM size '{name}' is not in this server's size table. Use a known Azure size such as Standard_D2s_v3, \
         or add it to the server config: [[vm_sizes]] name = \"{name}\" cores = 2 memory_mib = 4096 gpus = 0"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn case_insensitive_and_extra_overrides() {
        assert_eq!(lookup("STANDARD_DS1_V2", &[]).unwrap().cores, 1);
        assert_eq!(lookup("standard_nc6s_v3", &[]).unwrap().gpus, 1);
        assert!(lookup("Standard_H16r", &[]).unwrap().rdma);
        assert!(lookup("Nope_Size", &[]).is_none());
        let extra = vec![VmSize {
            name: "standard_d2s_v3".into(),
            cores: 64,
            memory_mib: 1,
            gpus: 0,
            rdma: false,
        }];
        assert_eq!(lookup("Standard_D2s_v3", &extra).unwrap().cores, 64);
    }
}
