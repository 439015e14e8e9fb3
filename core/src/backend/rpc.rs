//! llama.cpp's RPC backend: a model's layers spread over worker processes (`corral rpc-server`
//! on each host) and this one. The backend is ggml's own (`libggml-rpc.so`, a backend module
//! beside the CPU variants), built with one change (core/build.rs `RPC_PATCHES`): a worker
//! lost while the model runs fails the waiting call instead of aborting the host.
//!
//! The protocol has no authentication and trusts the client completely: workers belong on a
//! private network (the server binds to 127.0.0.1 unless told otherwise).
//!
//! Each worker is checked with the protocol's own handshake, bounded in time, before llama.cpp
//! connects (its own connect and read calls wait as long as the operating system lets them).
//! A worker serves one client connection at a time; the models of one process that share a
//! worker share that process's connection.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_void, CStr, CString};
use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use llama_cpp_sys_2 as sys;

use crate::error::{Error, ErrorKind, Result};

/// The port `corral rpc-server` listens on by default (upstream's).
pub const RPC_DEFAULT_PORT: u16 = 50052;

/// Most workers one model may use (ggml's `GGML_RPC_MAX_SERVERS`).
pub const MAX_SERVERS: usize = 16;

/// How long connecting to a worker and its handshake may take.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// The protocol version this build speaks (ggml-rpc.h `RPC_PROTO_*_VERSION`): a worker must
/// have the same major version and no newer minor one.
const PROTOCOL_MAJOR: u8 = 7;
const PROTOCOL_MINOR: u8 = 0;

/// ggml-rpc.cpp: `RPC_CMD_HELLO` and the sizes of its request (connection capabilities) and
/// reply (major, minor, patch, padding, capabilities).
const CMD_HELLO: u8 = 14;
const HELLO_REQUEST_SIZE: usize = 24;
const HELLO_REPLY_SIZE: usize = 28;

/// Prefix of the message core/native/abort_guard.cpp raises when a worker is lost.
const LOST_PREFIX: &str = "corral-rpc-lost: ";

extern "C" {
    /// native/abort_guard.cpp
    fn corral_rpc_lost(endpoint: *const c_char);
    fn corral_guarded_rpc_add_server(
        add_server: unsafe extern "C" fn(*const c_char) -> *mut c_void,
        endpoint: *const c_char,
    ) -> *mut c_void;
}

type AddServer = unsafe extern "C" fn(*const c_char) -> *mut c_void;
type StartServer = unsafe extern "C" fn(*const c_char, *const c_char, usize, usize, *mut sys::ggml_backend_dev_t);

/// The loaded RPC module's entry points.
struct Module {
    add_server: AddServer,
    start_server: StartServer,
}

static MODULE: OnceLock<std::result::Result<Module, String>> = OnceLock::new();

fn module() -> Result<&'static Module> {
    let variant = crate::backend::cpu_variant()?;
    MODULE
        .get_or_init(|| load_module(&variant.path.with_file_name("libggml-rpc.so")))
        .as_ref()
        .map_err(|message| Error::new(ErrorKind::Unsupported, message.clone()))
}

fn load_module(path: &std::path::Path) -> std::result::Result<Module, String> {
    // The backend loader registered the module with the others (backend::load_backend_libraries).
    // SAFETY: a NUL-terminated name; ggml returns null when no such backend is registered.
    let reg = unsafe { sys::ggml_backend_reg_by_name(c"RPC".as_ptr()) };
    if reg.is_null() {
        return Err(format!("this corral has no RPC backend ({} was not loaded)", path.display()));
    }
    let proc = |name: &CStr| crate::backend::proc_address(reg, name);
    let (Some(add_server), Some(start_server)) = (proc(c"ggml_backend_rpc_add_server"), proc(c"ggml_backend_rpc_start_server")) else {
        return Err("the RPC backend lacks ggml_backend_rpc_add_server or ggml_backend_rpc_start_server".into());
    };
    // corral's handler for a lost worker (see core/build.rs RPC_PATCHES): without it a lost
    // worker would abort the host, so an RPC module without the hook is not used.
    let c_path = CString::new(path.as_os_str().as_encoded_bytes()).map_err(|_| "bad RPC module path".to_string())?;
    // SAFETY: a NUL-terminated path; RTLD_NOLOAD only finds the copy ggml already loaded.
    let handle = unsafe { libc::dlopen(c_path.as_ptr(), libc::RTLD_NOW | libc::RTLD_NOLOAD) };
    if handle.is_null() {
        return Err(format!("the RPC backend {} is not loaded", path.display()));
    }
    // SAFETY: a live handle and a NUL-terminated name.
    let hook = unsafe { libc::dlsym(handle, c"corral_rpc_lost_handler".as_ptr()) };
    // SAFETY: balances the dlopen above; ggml keeps its own reference.
    unsafe { libc::dlclose(handle) };
    if hook.is_null() {
        return Err(format!("{} was not built by corral (it lacks corral_rpc_lost_handler)", path.display()));
    }
    // SAFETY: the symbol is the module's `void (*corral_rpc_lost_handler)(const char *)`,
    // written once here before any worker is used.
    unsafe { *hook.cast::<Option<unsafe extern "C" fn(*const c_char)>>() = Some(corral_rpc_lost) };
    // SAFETY: both addresses come from the module under these names, with these signatures
    // (ggml-rpc.h).
    unsafe {
        Ok(Module {
            add_server: std::mem::transmute::<*mut c_void, AddServer>(add_server),
            start_server: std::mem::transmute::<*mut c_void, StartServer>(start_server),
        })
    }
}

/// Checks a worker address: `host:port`, as upstream's client parses it.
pub(crate) fn check_endpoint(endpoint: &str) -> Result<()> {
    let problem = match endpoint.rsplit_once(':') {
        None => Some("it has no port"),
        Some((host, _)) if host.is_empty() => Some("it has no host"),
        Some((_, port)) if port.parse::<u16>().map_or(true, |p| p == 0) => Some("its port is not a number from 1 to 65535"),
        Some(_) if endpoint.contains(char::is_whitespace) || endpoint.contains('\0') => Some("it contains white space"),
        Some(_) => None,
    };
    match problem {
        Some(problem) => Err(Error::invalid_argument(format!("RPC worker {endpoint:?} is not host:port: {problem}"))),
        None => Ok(()),
    }
}

fn unavailable(endpoint: &str, why: impl std::fmt::Display) -> Error {
    Error::new(ErrorKind::WorkerUnavailable, format!("RPC worker {endpoint}: {why}"))
}

/// The protocol's handshake with a timeout: the worker must answer as an RPC server of a
/// version this build speaks.
fn handshake(endpoint: &str) -> Result<()> {
    let addresses = endpoint.to_socket_addrs().map_err(|e| unavailable(endpoint, format!("cannot resolve the address: {e}")))?;
    let mut last_error = None;
    let mut stream = None;
    for address in addresses {
        match TcpStream::connect_timeout(&address, HANDSHAKE_TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last_error = Some(e),
        }
    }
    let Some(mut stream) = stream else {
        let why = last_error.map_or_else(|| "no address".to_string(), |e| e.to_string());
        return Err(unavailable(endpoint, format!("cannot connect: {why}")));
    };
    let timeouts = stream.set_read_timeout(Some(HANDSHAKE_TIMEOUT)).and_then(|()| stream.set_write_timeout(Some(HANDSHAKE_TIMEOUT)));
    timeouts.map_err(|e| unavailable(endpoint, e))?;
    let mut request = vec![CMD_HELLO];
    request.extend_from_slice(&(HELLO_REQUEST_SIZE as u64).to_le_bytes());
    request.extend_from_slice(&[0; HELLO_REQUEST_SIZE]);
    let mut size = [0u8; 8];
    let mut reply = [0u8; HELLO_REPLY_SIZE];
    let answered = stream.write_all(&request).and_then(|()| stream.read_exact(&mut size));
    if let Err(e) = answered {
        let why = if matches!(e.kind(), std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut) {
            format!(
                "no answer to the RPC handshake within {} s (busy serving another client, or not an RPC worker)",
                HANDSHAKE_TIMEOUT.as_secs()
            )
        } else {
            format!("the RPC handshake failed: {e} (not an RPC worker, or one that refused this client)")
        };
        return Err(unavailable(endpoint, why));
    }
    if u64::from_le_bytes(size) != HELLO_REPLY_SIZE as u64 || stream.read_exact(&mut reply).is_err() {
        return Err(unavailable(endpoint, "its answer to the RPC handshake is malformed (another protocol version, or not an RPC worker)"));
    }
    let (major, minor, patch) = (reply[0], reply[1], reply[2]);
    if major != PROTOCOL_MAJOR || minor > PROTOCOL_MINOR {
        return Err(unavailable(
            endpoint,
            format!("it speaks RPC protocol {major}.{minor}.{patch}; this corral speaks {PROTOCOL_MAJOR}.{PROTOCOL_MINOR} (run the same corral version on every host)"),
        ));
    }
    Ok(())
}

/// Workers this process holds a connection to (llama.cpp shares one per worker), with how many
/// models use it: those are not handshaken again (the worker serves one connection at a time).
static IN_USE: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

/// The workers a model uses: their devices, and a hold on their connections while it lives.
pub(crate) struct Workers {
    endpoints: Vec<String>,
    /// Every device of every worker, in the order of `endpoints`.
    pub(crate) devices: Vec<sys::ggml_backend_dev_t>,
    /// The number of devices of each worker, in the order of `endpoints`.
    pub(crate) per_worker: Vec<usize>,
}

// SAFETY: device handles are process-wide ggml objects, never freed, usable from any thread.
unsafe impl Send for Workers {}
// SAFETY: as above; `Workers` only hands the handles to llama.cpp.
unsafe impl Sync for Workers {}

impl Drop for Workers {
    fn drop(&mut self) {
        let mut in_use = IN_USE.lock().unwrap_or_else(|e| e.into_inner());
        for endpoint in &self.endpoints {
            if let Some(count) = in_use.get_mut(endpoint) {
                *count -= 1;
                if *count == 0 {
                    in_use.remove(endpoint);
                }
            }
        }
    }
}

/// Connects to every worker (after checking it answers in time) and returns their devices.
pub(crate) fn connect(endpoints: &[String]) -> Result<Workers> {
    let module = module()?;
    let mut workers = Workers { endpoints: Vec::new(), devices: Vec::new(), per_worker: Vec::new() };
    for endpoint in endpoints {
        check_endpoint(endpoint)?;
        let shared = IN_USE.lock().unwrap_or_else(|e| e.into_inner()).contains_key(endpoint);
        if !shared {
            handshake(endpoint)?;
        }
        let c_endpoint =
            CString::new(endpoint.as_str()).map_err(|_| Error::invalid_argument("an RPC worker address contains a NUL byte"))?;
        crate::llama::guard::install();
        // SAFETY: the module's add_server and a NUL-terminated address; asserts are caught.
        let reg = unsafe { corral_guarded_rpc_add_server(module.add_server, c_endpoint.as_ptr()) } as sys::ggml_backend_reg_t;
        if reg.is_null() {
            let why = crate::llama::guard::take_assert_message().unwrap_or_else(|| "it has no devices".into());
            return Err(unavailable(endpoint, why));
        }
        // SAFETY: a live registration; its devices live as long as the process.
        let count = unsafe { sys::ggml_backend_reg_dev_count(reg) };
        for index in 0..count {
            // SAFETY: an index below the count.
            workers.devices.push(unsafe { sys::ggml_backend_reg_dev_get(reg, index) });
        }
        workers.per_worker.push(count);
        *IN_USE.lock().unwrap_or_else(|e| e.into_inner()).entry(endpoint.clone()).or_insert(0) += 1;
        workers.endpoints.push(endpoint.clone());
    }
    Ok(workers)
}

/// The worker named by an assert message raised for a lost worker, if that is what it is.
pub(crate) fn lost_worker(message: &str) -> Option<&str> {
    message.strip_prefix(LOST_PREFIX)
}

/// The error of every request on a model whose worker was lost.
pub(crate) fn lost_error(endpoint: &str) -> Error {
    unavailable(
        endpoint,
        "the connection was lost while the model ran (the worker stopped or the network failed); \
         this model cannot run again: close it and load it again",
    )
}

/// Whether `host` is a loopback address.
fn is_loopback(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Serves this machine's CPU to RPC clients (models loaded with `rpc_servers`) on
/// `host:port` with `threads` threads, until the process ends: ggml's own server, one client
/// at a time. Warns on stderr when `host` is not a loopback address: the protocol has no
/// authentication. Returns only when it cannot listen.
pub fn serve_rpc(host: &str, port: u16, threads: u32) -> Result<()> {
    let endpoint = if host.contains(':') && !host.starts_with('[') { format!("[{host}]:{port}") } else { format!("{host}:{port}") };
    check_endpoint(&endpoint)?;
    let module = module()?;
    if !is_loopback(host) {
        eprintln!(
            "corral: WARNING: the RPC server listens on {host}: its protocol has no authentication, and any client that \
             connects can run computations and read and write this process's buffers. Use it on a private network only."
        );
    }
    // SAFETY: plain query of the registered devices.
    let mut cpu = unsafe { sys::ggml_backend_dev_by_type(sys::GGML_BACKEND_DEVICE_TYPE_CPU) };
    if cpu.is_null() {
        return Err(Error::internal("no CPU device is registered"));
    }
    let c_endpoint = CString::new(endpoint.as_str()).map_err(|_| Error::invalid_argument("the address contains a NUL byte"))?;
    // SAFETY: the module's start_server with a NUL-terminated address, no cache folder and
    // one device; it returns only when it cannot listen.
    unsafe { (module.start_server)(c_endpoint.as_ptr(), std::ptr::null(), threads.max(1) as usize, 1, &mut cpu) };
    Err(Error::new(
        ErrorKind::WorkerUnavailable,
        format!("the RPC server could not listen on {endpoint} (address in use, or not this host's)"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::ModelOptions;

    #[test]
    fn worker_addresses_are_host_and_port() {
        for good in ["127.0.0.1:50052", "localhost:1", "[::1]:65535", "worker-3.internal:50052"] {
            assert!(check_endpoint(good).is_ok(), "{good}");
        }
        for bad in ["nohost", ":50052", "h:0", "h:65536", "h:port", "h :1", "h:1\n", ""] {
            assert_eq!(check_endpoint(bad).unwrap_err().kind(), ErrorKind::InvalidArgument, "{bad:?}");
        }
        assert!(is_loopback("127.0.0.1") && is_loopback("::1") && is_loopback("[::1]") && is_loopback("localhost"));
        assert!(!is_loopback("0.0.0.0") && !is_loopback("10.0.0.5") && !is_loopback("example.com"));
    }

    #[test]
    fn rpc_options_are_checked_before_anything_connects() {
        let with = |servers: &[&str], split: &[f32]| ModelOptions {
            rpc_servers: servers.iter().map(|s| s.to_string()).collect(),
            rpc_split: split.to_vec(),
            ..Default::default()
        };
        assert!(with(&["a:1", "b:2"], &[]).validate().is_ok());
        assert!(with(&["a:1", "b:2"], &[1.0, 0.0, 2.0]).validate().is_ok());
        for options in [
            with(&["a:1", "a:1"], &[]),
            with(&["a:1"], &[1.0]),
            with(&["a:1"], &[1.0, f32::NAN]),
            with(&["a:1"], &[1.0, -1.0]),
            with(&["a:1"], &[0.0, 0.0]),
            with(&[], &[1.0]),
            with(&["a:1"; MAX_SERVERS + 1], &[]),
            ModelOptions { auto_context_length: true, ..with(&["a:1"], &[]) },
        ] {
            assert_eq!(options.validate().unwrap_err().kind(), ErrorKind::InvalidArgument, "{options:?}");
        }
    }

    #[test]
    fn a_lost_worker_is_named_in_its_error() {
        let message = format!("{LOST_PREFIX}10.0.0.5:50052");
        assert_eq!(lost_worker(&message), Some("10.0.0.5:50052"));
        assert_eq!(lost_worker("GGML_ASSERT(x) failed"), None);
        let error = lost_error("10.0.0.5:50052");
        assert_eq!(error.kind(), ErrorKind::WorkerUnavailable);
        assert!(error.message().contains("10.0.0.5:50052"));
    }
}
