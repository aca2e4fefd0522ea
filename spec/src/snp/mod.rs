//! AMD SEV-SNP structures.

pub mod cpuid;
pub mod ghcb;
pub mod guest_msg;
pub mod metadata;
pub mod page_info;
pub mod psc;
pub mod report;
pub mod vmsa;

pub use cpuid::{SnpCpuidFn, SnpCpuidPage};
pub use ghcb::{Ghcb, GhcbSaveArea};
pub use guest_msg::{GuestMsgHeader, KeyReq, KeyRsp, ReportReq, ReportRsp, SecretsPage};
pub use page_info::PageInfo;
pub use psc::{PscDesc, PscHeader};
pub use report::AttestationReport;
pub use vmsa::{VmcbSegment, Vmsa};
