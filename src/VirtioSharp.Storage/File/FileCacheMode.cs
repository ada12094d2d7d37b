namespace VirtioSharp.Storage;

/// <summary>How a <see cref="FileStorage"/> uses the host's caches (the meanings of QEMU's <c>cache=</c> modes).</summary>
public enum FileCacheMode
{
    /// <summary>Page cache; a guest FLUSH becomes fdatasync. The guest sees a volatile write cache (CLI: <c>writeback</c>).</summary>
    Writeback,
    /// <summary>O_DIRECT: no host page cache, the disk's own cache remains, so FLUSH is still fdatasync (CLI: <c>none</c>).</summary>
    None,
    /// <summary>Page cache with O_DSYNC: every write is durable before it completes; no volatile cache (CLI: <c>writethrough</c>).</summary>
    Writethrough,
    /// <summary>Page cache and FLUSH/FUA ignored: fast, and a host crash loses data the guest believes durable (CLI: <c>unsafe</c>).</summary>
    Unsafe,
}
