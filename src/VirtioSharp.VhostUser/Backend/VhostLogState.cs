using Microsoft.Extensions.Logging;
using VirtioSharp.Interop;
using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The dirty-page log of one connection (vhost-user.rst "Migration", "Dirty pages logging"): the shared memory of
/// SET_LOG_BASE, validated like a memory region (a sealed memory file holding the whole log, no overflow, bounded size)
/// and mapped before it replaces the previous one, the eventfd of SET_LOG_FD, and the <see cref="DirtyLog"/> every ring's
/// address space marks. The caller pauses the rings around <see cref="Swap"/> and <see cref="SetEnabled"/> so that no
/// write is half logged into a bitmap being replaced. Owns the mapping and the eventfd.
/// </summary>
internal sealed class VhostLogState(bool allowUnsealed, bool injectNoLog, ILogger log) : IDisposable
{
    /// <summary>
    /// Largest log accepted: 1 GiB of bits covers 32 TiB of guest-physical addresses (QEMU sizes the log to the highest
    /// address of guest memory), far beyond <see cref="VhostUserBackendOptions.MaxGuestMemoryBytes"/>.
    /// </summary>
    public const ulong MaxLogBytes = 1UL << 30;

    private MappedRegion? _map;

    /// <summary>The log the rings' address spaces mark.</summary>
    public DirtyLog Log { get; } = new();

    /// <summary>The eventfd of SET_LOG_FD (kept for its owner; QEMU 7.2 does not send one and reads the log on its own schedule).</summary>
    public EventFd? LogFd { get; private set; }

    /// <summary>
    /// SET_LOG_BASE: validates the description and the fd, maps [0, offset + size) from it and returns the mapping to
    /// <see cref="Swap"/> in; the fd itself is not kept (the mapping outlives it).
    /// </summary>
    public MappedRegion Prepare(LogDescription d, SafeFd fd)
    {
        if (d.Size == 0) throw new VhostProtocolException("SET_LOG_BASE: log size 0");
        if (d.Size > MaxLogBytes)
            throw new VhostProtocolException($"SET_LOG_BASE: log of {d.Size} bytes is larger than the back-end's limit of {MaxLogBytes} (it would cover more than {MaxLogBytes << 15 >> 40} TiB of guest memory)");
        if (d.Offset + d.Size < d.Offset || d.Offset + d.Size > long.MaxValue)
            throw new VhostProtocolException($"SET_LOG_BASE: offset 0x{d.Offset:x} + size 0x{d.Size:x} overflows");
        if (!PeerFd.RequireSharedMemory(fd, "SET_LOG_BASE", allowUnsealed))
            log.LogWarning("SET_LOG_BASE: the log is not sealed against shrinking (accepted by --allow-unsealed-memory): a front-end that truncates it crashes this back-end");
        long fileSize = fd.GetSize();
        if (fileSize < 0 || (ulong)fileSize < d.Offset + d.Size)
            throw new VhostProtocolException($"SET_LOG_BASE: the log needs {d.Offset + d.Size} bytes of its file, which has {fileSize} (mmap would fault)");
        // From offset 0, as for memory regions: mmap offsets must be page aligned, log offsets need not be. The mapping
        // starts on a page, so the aligned word around every log byte lies inside it (DirtyLog.Attach's rule).
        try { return MappedRegion.Map(fd, d.Offset + d.Size, 0); }
        catch (IOException e) { throw new VhostProtocolException($"SET_LOG_BASE: {e.Message}"); }
    }

    /// <summary>Installs a mapping from <see cref="Prepare"/> (rings paused) and releases the previous one.</summary>
    public void Swap(MappedRegion map, LogDescription d)
    {
        var old = _map;
        Log.Attach(map.Address + (nint)d.Offset, d.Size);
        _map = map;
        old?.Dispose();
    }

    /// <summary>VHOST_F_LOG_ALL on or off (rings paused). Fault injection keeps the log off whatever the front-end asks.</summary>
    public void SetEnabled(bool on) => Log.Enabled = on && !injectNoLog;

    /// <summary>SET_LOG_FD: replaces the eventfd (checked by the caller).</summary>
    public void SetLogFd(EventFd fd)
    {
        var old = LogFd;
        LogFd = fd;
        old?.Dispose();
    }

    /// <summary>Bytes of the mapped log (0: none).</summary>
    public ulong MappedBytes => _map is { } m ? (ulong)m.Length : 0;

    public void Dispose()
    {
        Log.Detach();
        _map?.Dispose();
        _map = null;
        LogFd?.Dispose();
        LogFd = null;
    }
}
