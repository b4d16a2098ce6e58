#if canImport(Glibc)
import Glibc
#endif

/// The process's resource limits.
public enum ProcessLimits {
    /// Takes the whole hard limit of open files (20,000 on this machine): each connection is a
    /// descriptor. `serve` and the benchmarks call it first.
    public static func raiseOpenFiles() {
        var limit = rlimit()
        let resource = __rlimit_resource_t(RLIMIT_NOFILE.rawValue)
        if getrlimit(resource, &limit) == 0 && limit.rlim_cur < limit.rlim_max {
            limit.rlim_cur = limit.rlim_max
            _ = setrlimit(resource, &limit)
        }
    }
}
