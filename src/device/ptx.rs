//! Our kernels' PTX: the table build.rs embeds (one entry per toolchain, architecture and kernel
//! family), which of it a device and driver can load and in what order to try it, and what the
//! PTX text says (its `.entry` names and parameter sizes). The CUDA backend (cuda.rs) loads what
//! this chooses; nothing here talks to a driver.

/// The PTX embedded by build.rs: `PTX_TABLE` (one [`EmbeddedPtx`] per toolchain, arch and family),
/// `TOOLCHAINS`, `NVCC`, `REQUIRED`, and the emulator's builds.
pub mod embedded {
    /// kernels/`family`.cu compiled by `toolchain` ("nvcc 13.0", "nvrtc 12.0") for compute_`arch`;
    /// `isa` is the PTX ISA version in its `.version` line, which decides the drivers that load it.
    #[derive(Clone, Copy, Debug)]
    pub struct EmbeddedPtx {
        pub arch: u32,
        pub isa: (u32, u32),
        pub toolchain: &'static str,
        pub family: &'static str,
        /// The PTX text, raw-deflated by build.rs (the binaries stay small enough to carry).
        pub deflated: &'static [u8],
    }

    include!(concat!(env!("OUT_DIR"), "/kernels.rs"));

    impl EmbeddedPtx {
        /// The PTX text, inflated on first use and kept for the process.
        pub fn text(&self) -> &'static str {
            use std::io::Read as _;
            use std::sync::OnceLock;
            static TEXTS: OnceLock<Vec<OnceLock<&'static str>>> = OnceLock::new();
            let texts = TEXTS.get_or_init(|| PTX_TABLE.iter().map(|_| OnceLock::new()).collect());
            let i = PTX_TABLE
                .iter()
                .position(|e| std::ptr::eq(e.deflated, self.deflated))
                .expect("an entry of PTX_TABLE");
            texts[i].get_or_init(|| {
                let mut s = String::new();
                flate2::read::DeflateDecoder::new(self.deflated)
                    .read_to_string(&mut s)
                    .expect("embedded PTX inflates");
                Box::leak(s.into_boxed_str())
            })
        }
    }

    /// The distinct architectures in the table, ascending.
    pub fn archs() -> Vec<u32> {
        let mut a: Vec<u32> = PTX_TABLE.iter().map(|e| e.arch).collect();
        a.dedup();
        a
    }

    /// A full set of families built by one toolchain for one arch.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub struct PtxSet {
        pub arch: u32,
        pub isa: (u32, u32),
        pub toolchain: &'static str,
    }

    impl PtxSet {
        pub fn entries(self) -> impl Iterator<Item = &'static EmbeddedPtx> {
            PTX_TABLE
                .iter()
                .filter(move |e| e.arch == self.arch && e.toolchain == self.toolchain)
        }
    }

    impl std::fmt::Display for PtxSet {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(
                f,
                "PTX sm_{} ISA {}.{} by {}",
                self.arch, self.isa.0, self.isa.1, self.toolchain
            )
        }
    }

    /// The distinct (arch, toolchain) sets of the table.
    pub fn sets() -> Vec<PtxSet> {
        let mut v: Vec<PtxSet> = Vec::new();
        for e in PTX_TABLE {
            let s = PtxSet {
                arch: e.arch,
                isa: e.isa,
                toolchain: e.toolchain,
            };
            if !v.contains(&s) {
                v.push(s);
            }
        }
        v
    }

    /// The sets to try on a device of compute capability `cc` (×10) under a driver of CUDA
    /// `driver` (cuDriverGetVersion), best first: the highest arch not above `cc`, then the newest
    /// PTX ISA; sets whose ISA needs a newer driver are left out, with one line per toolchain
    /// saying why. `only` keeps the toolchains whose name starts with it (`PIX2PIX_PTX=nvrtc`).
    pub fn plan(cc: u32, driver: i32, only: Option<&str>) -> (Vec<PtxSet>, Vec<String>) {
        let mut try_ = Vec::new();
        let mut skipped = Vec::new();
        let wanted = |s: &PtxSet| only.is_none_or(|o| s.toolchain.starts_with(o));
        for s in sets().into_iter().filter(|s| s.arch <= cc && wanted(s)) {
            match super::ptx_needs_cuda(s.isa) {
                Some(need) if need > driver => {
                    let why = format!(
                        "{}'s PTX (ISA {}.{}) needs a CUDA {} driver",
                        s.toolchain,
                        s.isa.0,
                        s.isa.1,
                        super::cuda_version_str(need)
                    );
                    if !skipped.contains(&why) {
                        skipped.push(why);
                    }
                }
                _ => try_.push(s),
            }
        }
        try_.sort_by_key(|s| std::cmp::Reverse((s.arch, s.isa)));
        (try_, skipped)
    }
}

/// `13000` → "13.0" (a cuDriverGetVersion number as a CUDA version).
pub(crate) fn cuda_version_str(v: i32) -> String {
    format!("{}.{}", v / 1000, (v % 1000) / 10)
}

/// The oldest CUDA driver (×1000 + minor×10, as cuDriverGetVersion reports it) that loads PTX of ISA
/// version `isa`, from the PTX ISA's release history: 7.x is CUDA 11.x, 8.0–8.5 is CUDA 12.0–12.5,
/// 8.6/8.7/8.8 is CUDA 12.7/12.8/12.9, 9.x is CUDA 13.x. None for ISAs older than 7.0.
pub fn ptx_needs_cuda(isa: (u32, u32)) -> Option<i32> {
    let (maj, min) = (isa.0 as i32, isa.1 as i32);
    match maj {
        7 => Some(11000 + min * 10),
        8 if min <= 5 => Some(12000 + min * 10),
        8 => Some(12010 + min * 10),
        9 => Some(13000 + min * 10),
        _ => None,
    }
}

/// The `.entry` names of a PTX module and the byte size of each parameter (`.param .u64 x` → 8,
/// `.param .align 8 .b8 x[56]` → 56).
pub fn ptx_entries(ptx: &str) -> Vec<(String, Vec<usize>)> {
    let mut out = Vec::new();
    let mut rest = ptx;
    while let Some(i) = rest.find(".entry") {
        rest = &rest[i + 6..];
        let name: String = rest
            .trim_start()
            .chars()
            .take_while(|c| c.is_alphanumeric() || *c == '_' || *c == '$')
            .collect();
        let mut sizes = vec![];
        if let (Some(o), Some(c)) = (rest.find('('), rest.find(')')) {
            if rest.find('{').is_none_or(|b| o < b) && o < c {
                for decl in rest[o + 1..c].split(',').filter(|d| d.contains(".param")) {
                    let mut size = 0;
                    let mut count = 1;
                    for word in decl.split_whitespace() {
                        let w = word.as_bytes();
                        if w.len() > 2 && w[0] == b'.' && b"busf".contains(&w[1]) && w[2].is_ascii_digit() {
                            size = word[2..].parse::<usize>().unwrap_or(0) / 8;
                        }
                        if let Some((_, n)) = word.split_once('[') {
                            count = n.trim_end_matches(']').parse().unwrap_or(1);
                        }
                    }
                    sizes.push(size * count);
                }
            }
        }
        out.push((name, sizes));
    }
    out
}

/// The parameter sizes of kernel `name` in the embedded PTX (the first architecture's).
pub fn ptx_param_sizes(name: &str) -> Option<Vec<usize>> {
    let arch = *embedded::archs().first()?;
    embedded::PTX_TABLE
        .iter()
        .filter(|e| e.arch == arch)
        .flat_map(|e| ptx_entries(e.text()))
        .find(|e| e.0 == name)
        .map(|e| e.1)
}
