//! Child processes the suites start (moto's server among them), killed when a test ends.
//! Shared by the CLI's suites (through `common`) and the relay's contract suite.
#![allow(dead_code, unreachable_pub)]

use std::process::Command;

/// Kills a child process when the test ends, however it ends.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts moto's server on a free loopback port; returns it and its URL.
pub fn moto() -> (Child, String) {
    let bin = std::env::var("CAIRN_MOTO_SERVER").unwrap_or_else(|_| "moto_server".into());
    let port = free_port();
    let child = Command::new(&bin)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start moto's DynamoDB server ({bin}): {e}. Run `cargo xtask test`, which \
                 installs it, or `pip install 'moto[server]'` and set CAIRN_MOTO_SERVER"
            )
        });
    let child = Child(child);
    let start = std::time::Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            start.elapsed() < std::time::Duration::from_secs(60),
            "moto did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    (child, format!("http://127.0.0.1:{port}"))
}
