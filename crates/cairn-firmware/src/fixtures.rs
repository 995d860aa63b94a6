//! Deterministic firmware test images, built from parts this project makes itself with the
//! Debian tools the test command installs (`mkimage` from u-boot-tools, `mksquashfs` from
//! squashfs-tools, `zip`, `tar`, `gzip`). Nothing generated is committed; the same call gives
//! the same bytes (fixed times, sorted archives, no host names).
//!
//! Release layout (fixed slots, so a change in one part moves nothing else):
//!
//! ```text
//! 0x000000  uImage: 64-byte header + 256 KiB gzip "kernel" (zero-padded)
//! 0x080000  SquashFS 4 root filesystem (gzip), 0xFF padding after it
//! 0x180000  PEM certificate; v2 adds a zip of release notes right after it
//! ```

use std::path::{Path, PathBuf};
use std::process::Command;

/// A part the generator placed, with where it put it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placed {
    /// binwalk's signature name for it.
    pub name: &'static str,
    /// Offset in the image.
    pub offset: u64,
}

/// A generated image and its known parts.
#[derive(Debug, Clone)]
pub struct Fixture {
    /// The file.
    pub path: PathBuf,
    /// Known parts, by offset.
    pub parts: Vec<Placed>,
}

/// All generated images.
#[derive(Debug, Clone)]
pub struct Fixtures {
    /// Release 1: uImage + SquashFS + PEM.
    pub v1: Fixture,
    /// Release 2: new kernel, same root filesystem, new certificate, added zip.
    pub v2: Fixture,
    /// A zip update bundle holding release 1 and a certificate.
    pub bundle_zip: Fixture,
    /// The same bundle as tar.gz.
    pub bundle_tgz: Fixture,
    /// A small ELF executable (x86-64).
    pub elf: Fixture,
    /// 1 MiB of keystream: looks encrypted, has no parts.
    pub encrypted: Fixture,
    /// Truncated and corrupted variants of each of the above.
    pub damaged: Vec<PathBuf>,
}

/// Where the root filesystem goes.
pub const ROOTFS_AT: u64 = 0x8_0000;
/// Where the certificate goes.
pub const CERT_AT: u64 = 0x18_0000;
const KERNEL_SLOT: usize = 256 << 10;

type Result<T> = std::result::Result<T, String>;

fn run(cmd: &mut Command) -> Result<()> {
    let out = cmd
        .output()
        .map_err(|e| format!("{:?}: {e} (is it installed?)", cmd.get_program()))?;
    if !out.status.success() {
        return Err(format!(
            "{:?} failed: {}",
            cmd.get_program(),
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(())
}

fn write(p: &Path, data: &[u8]) -> Result<()> {
    std::fs::write(p, data).map_err(|e| format!("{}: {e}", p.display()))
}

fn read(p: &Path) -> Result<Vec<u8>> {
    std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))
}

/// Deterministic bytes that look random (BLAKE3 in XOF mode).
pub fn keystream(seed: &str, len: usize) -> Vec<u8> {
    let mut out = vec![0u8; len];
    blake3::Hasher::new_derive_key("cairn firmware fixtures v1")
        .update(seed.as_bytes())
        .finalize_xof()
        .fill(&mut out);
    out
}

/// Text that compresses like a kernel's strings: words from a keystream.
fn text(seed: &str, len: usize) -> Vec<u8> {
    let words = [
        "irq", "dma", "mtd", "spi", "eth0", "init", "probe", "clk", "gpio", "uart", "modbus",
        "profinet", "watchdog", "\n",
    ];
    let ks = keystream(seed, len);
    let mut out = Vec::with_capacity(len + 16);
    for b in ks {
        out.extend_from_slice(words[b as usize % words.len()].as_bytes());
        out.push(b' ');
        if out.len() >= len {
            break;
        }
    }
    out.truncate(len);
    out
}

fn set_mtime_zero(dir: &Path) -> Result<()> {
    run(Command::new("find")
        .arg(dir)
        .args(["-exec", "touch", "-h", "-d", "@0", "{}", "+"]))
}

fn gzip(src: &Path) -> Result<Vec<u8>> {
    let out = Command::new("gzip")
        .args(["-n", "-9", "-c"])
        .arg(src)
        .output()
        .map_err(|e| format!("gzip: {e}"))?;
    if !out.status.success() {
        return Err("gzip failed".into());
    }
    Ok(out.stdout)
}

fn uimage(work: &Path, tag: &str) -> Result<Vec<u8>> {
    let raw = work.join(format!("kernel-{tag}"));
    write(&raw, &text(&format!("kernel {tag}"), 600_000))?;
    let mut kernel = gzip(&raw)?;
    if kernel.len() > KERNEL_SLOT {
        return Err("kernel stand-in outgrew its slot".into());
    }
    kernel.resize(KERNEL_SLOT, 0);
    let gz = work.join(format!("kernel-{tag}.gz"));
    write(&gz, &kernel)?;
    let out = work.join(format!("uImage-{tag}"));
    run(Command::new("mkimage")
        .env("SOURCE_DATE_EPOCH", "1767225600")
        .args(["-A", "arm", "-O", "linux", "-T", "kernel", "-C", "gzip"])
        .args(["-a", "0x8000", "-e", "0x8000", "-n"])
        .arg(format!("cairn fixture kernel {tag}"))
        .arg("-d")
        .arg(&gz)
        .arg(&out))?;
    read(&out)
}

fn squashfs(work: &Path, tag: &str, config: &str) -> Result<Vec<u8>> {
    let root = work.join(format!("rootfs-{tag}"));
    let _ = std::fs::remove_dir_all(&root);
    for d in ["etc", "bin", "opt/plc"] {
        std::fs::create_dir_all(root.join(d)).map_err(|e| e.to_string())?;
    }
    write(&root.join("etc/issue"), b"Cairn fixture controller OS\n")?;
    write(&root.join("opt/plc/runtime.conf"), config.as_bytes())?;
    write(&root.join("bin/plcd"), &text("plcd", 200_000))?;
    set_mtime_zero(&root)?;
    let out = work.join(format!("rootfs-{tag}.sqfs"));
    let _ = std::fs::remove_file(&out);
    run(Command::new("mksquashfs")
        .arg(&root)
        .arg(&out)
        .args([
            "-noappend",
            "-no-xattrs",
            "-nopad",
            "-quiet",
            "-no-progress",
        ])
        .args([
            "-comp",
            "gzip",
            "-all-root",
            "-all-time",
            "0",
            "-mkfs-time",
            "0",
        ])
        .args(["-processors", "1"]))?;
    read(&out)
}

/// A self-signed-looking certificate block (PEM armour over keystream DER-ish bytes).
fn pem(tag: &str) -> Vec<u8> {
    let body = keystream(&format!("cert {tag}"), 720);
    let mut b64 = String::new();
    const ALPHA: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for c in body.chunks(3) {
        let n = (c[0] as u32) << 16 | (c[1] as u32) << 8 | c[2] as u32;
        for k in (0..4).rev() {
            b64.push(ALPHA[(n >> (6 * k)) as usize & 63] as char);
        }
    }
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out.into_bytes()
}

fn zip_of(work: &Path, name: &str, files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let dir = work.join(format!("{name}.d"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for (n, data) in files {
        write(&dir.join(n), data)?;
    }
    set_mtime_zero(&dir)?;
    let out = work.join(format!("{name}.zip"));
    let _ = std::fs::remove_file(&out);
    let mut cmd = Command::new("zip");
    cmd.current_dir(&dir)
        .args(["-X", "-D", "-q", "-9"])
        .arg(&out);
    for (n, _) in files {
        cmd.arg(n);
    }
    run(&mut cmd)?;
    read(&out)
}

fn tgz_of(work: &Path, name: &str, files: &[(&str, &[u8])]) -> Result<Vec<u8>> {
    let dir = work.join(format!("{name}.td"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    for (n, data) in files {
        write(&dir.join(n), data)?;
    }
    let tar = work.join(format!("{name}.tar"));
    let mut cmd = Command::new("tar");
    cmd.current_dir(&dir)
        .args([
            "--sort=name",
            "--mtime=@0",
            "--owner=0",
            "--group=0",
            "--numeric-owner",
        ])
        .args(["--format=gnu", "-cf"])
        .arg(&tar);
    for (n, _) in files {
        cmd.arg(n);
    }
    run(&mut cmd)?;
    gzip(&tar)
}

/// A minimal, valid x86-64 ELF executable: `exit(42)`.
fn elf() -> Vec<u8> {
    let code: &[u8] = &[
        0xb8, 0x3c, 0, 0, 0, // mov eax, 60 (exit)
        0xbf, 0x2a, 0, 0, 0, // mov edi, 42
        0x0f, 0x05, // syscall
    ];
    let vaddr: u64 = 0x40_0000;
    let entry = vaddr + 64 + 56;
    let total = (64 + 56 + code.len()) as u64;
    let mut e = Vec::new();
    e.extend_from_slice(b"\x7fELF");
    e.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little endian, version 1, SysV
    e.extend_from_slice(&[0; 8]);
    e.extend_from_slice(&2u16.to_le_bytes()); // ET_EXEC
    e.extend_from_slice(&0x3eu16.to_le_bytes()); // x86-64
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&entry.to_le_bytes());
    e.extend_from_slice(&64u64.to_le_bytes()); // program headers right after
    e.extend_from_slice(&0u64.to_le_bytes()); // no section headers
    e.extend_from_slice(&0u32.to_le_bytes());
    e.extend_from_slice(&64u16.to_le_bytes());
    e.extend_from_slice(&56u16.to_le_bytes());
    e.extend_from_slice(&1u16.to_le_bytes());
    e.extend_from_slice(&64u16.to_le_bytes());
    e.extend_from_slice(&[0; 4]);
    // PT_LOAD, R+X, the whole file.
    e.extend_from_slice(&1u32.to_le_bytes());
    e.extend_from_slice(&5u32.to_le_bytes());
    e.extend_from_slice(&0u64.to_le_bytes());
    e.extend_from_slice(&vaddr.to_le_bytes());
    e.extend_from_slice(&vaddr.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&total.to_le_bytes());
    e.extend_from_slice(&0x1000u64.to_le_bytes());
    e.extend_from_slice(code);
    e
}

fn place(img: &mut Vec<u8>, at: u64, part: &[u8]) -> Result<()> {
    let at = at as usize;
    if img.len() > at {
        return Err(format!("part at {at:#x} overlaps the previous one"));
    }
    img.resize(at, 0xff);
    img.extend_from_slice(part);
    Ok(())
}

fn release(work: &Path, tag: &str, extra_zip: bool, out: &Path) -> Result<Fixture> {
    let mut img = Vec::new();
    let mut parts = vec![Placed {
        name: "uimage",
        offset: 0,
    }];
    img.extend_from_slice(&uimage(work, tag)?);
    place(
        &mut img,
        ROOTFS_AT,
        &squashfs(work, "common", "scan_ms=10\nprotocol=modbus\n")?,
    )?;
    parts.push(Placed {
        name: "squashfs",
        offset: ROOTFS_AT,
    });
    let cert = pem(tag);
    place(&mut img, CERT_AT, &cert)?;
    parts.push(Placed {
        name: "pem_certificate",
        offset: CERT_AT,
    });
    if extra_zip {
        let at = CERT_AT + cert.len() as u64;
        let notes = text(&format!("notes {tag}"), 4000);
        place(
            &mut img,
            at,
            &zip_of(work, &format!("notes-{tag}"), &[("NOTES.txt", &notes)])?,
        )?;
        parts.push(Placed {
            name: "zip",
            offset: at,
        });
    }
    write(out, &img)?;
    Ok(Fixture {
        path: out.into(),
        parts,
    })
}

fn damage(src: &Path, out_dir: &Path) -> Result<Vec<PathBuf>> {
    let data = read(src)?;
    let stem = src
        .file_name()
        .and_then(|n| n.to_str())
        .ok_or("fixture without a name")?;
    let truncated = out_dir.join(format!("truncated-{stem}"));
    write(&truncated, &data[..data.len() * 3 / 5])?;
    let mut bad = data.clone();
    // Flip bytes at the start (headers) and in the middle (payload).
    for at in [4usize, 9, 20, data.len() / 2, data.len() / 2 + 1] {
        if let Some(b) = bad.get_mut(at) {
            *b ^= 0x5a;
        }
    }
    let corrupt = out_dir.join(format!("corrupt-{stem}"));
    write(&corrupt, &bad)?;
    Ok(vec![truncated, corrupt])
}

/// Builds every fixture into `dir` (created if needed).
pub fn generate(dir: &Path) -> Result<Fixtures> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let work = dir.join("work");
    std::fs::create_dir_all(&work).map_err(|e| e.to_string())?;
    let v1 = release(&work, "v1", false, &dir.join("firmware-v1.bin"))?;
    let v2 = release(&work, "v2", true, &dir.join("firmware-v2.bin"))?;
    let image = read(&v1.path)?;
    let cert = pem("bundle");
    let files: [(&str, &[u8]); 2] = [("cert.pem", &cert), ("firmware-v1.bin", &image)];
    let zip_path = dir.join("update-bundle.zip");
    write(&zip_path, &zip_of(&work, "bundle", &files)?)?;
    let tgz_path = dir.join("update-bundle.tar.gz");
    write(&tgz_path, &tgz_of(&work, "bundle", &files)?)?;
    let elf_path = dir.join("plc-runtime.elf");
    write(&elf_path, &elf())?;
    let enc_path = dir.join("encrypted.bin");
    write(&enc_path, &keystream("encrypted", 1 << 20))?;
    let _ = std::fs::remove_dir_all(&work);
    let mut damaged = Vec::new();
    for p in [&v1.path, &zip_path, &tgz_path, &elf_path, &enc_path] {
        damaged.extend(damage(p, dir)?);
    }
    Ok(Fixtures {
        v1,
        v2,
        bundle_zip: Fixture {
            path: zip_path,
            parts: vec![Placed {
                name: "zip",
                offset: 0,
            }],
        },
        bundle_tgz: Fixture {
            path: tgz_path,
            parts: vec![Placed {
                name: "gzip",
                offset: 0,
            }],
        },
        elf: Fixture {
            path: elf_path,
            parts: vec![Placed {
                name: "elf",
                offset: 0,
            }],
        },
        encrypted: Fixture {
            path: enc_path,
            parts: vec![],
        },
        damaged,
    })
}
