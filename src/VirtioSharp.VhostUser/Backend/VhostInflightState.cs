using VirtioSharp.Spec;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The inflight region (vhost-user.rst "Inflight I/O tracking"): made by GET_INFLIGHT_FD or handed back by
/// SET_INFLIGHT_FD after a restart, split or packed layout by the negotiated RING_PACKED, one area per queue.
/// Sizes, offset and fd length are checked before anything is mapped; owns the fd and the mapping.
/// </summary>
internal sealed class VhostInflightState : IDisposable
{
    /// <summary>Largest region accepted from a front-end.</summary>
    public const ulong MaxRegionBytes = 64UL << 20;
    private SafeFd? _fd;
    private MappedRegion? _map;

    public ushort QueueSize { get; private set; }
    public InflightQueue?[] Split { get; private set; } = [];
    public PackedInflightQueue?[] Packed { get; private set; } = [];

    public static bool ValidSize(ushort queueSize, bool packed) =>
        packed ? PackedRing.IsValidSize(queueSize) : SplitRingLayout.IsValidSize(queueSize);

    public static ulong QueueBytes(ushort queueSize, bool packed) =>
        packed ? PackedInflightQueue.QueueBytes(queueSize) : InflightQueue.QueueBytes(queueSize);

    /// <summary>GET_INFLIGHT_FD: a new zeroed region for <paramref name="queues"/> queues; returns its fd and size.</summary>
    public (SafeFd Fd, ulong Size) Create(int vrings, ushort queues, ushort queueSize, ushort maxQueueSize, bool packed)
    {
        if (queues == 0 || queues > vrings || queueSize == 0 || queueSize > maxQueueSize || !ValidSize(queueSize, packed))
            throw new VhostProtocolException($"GET_INFLIGHT_FD: {queues} queues of size {queueSize} do not fit this device");
        ulong size = QueueBytes(queueSize, packed) * queues;
        var fd = MemFd.Create("vhost-inflight", size);
        MappedRegion map;
        try { map = MappedRegion.Map(fd, size, 0); }
        catch { fd.Dispose(); throw; }
        unsafe { new Span<byte>((void*)map.Address, (int)size).Clear(); }
        Install(fd, map, vrings, queueSize, 0, packed);
        return (fd, size);
    }

    /// <summary>SET_INFLIGHT_FD: the region a previous back-end filled. Takes ownership of <paramref name="fd"/> only on success.</summary>
    public void Restore(SafeFd fd, ulong size, ulong offset, int vrings, ushort queues, ushort queueSize, ushort maxQueueSize, bool packed)
    {
        if (queues == 0 || queues > vrings || !ValidSize(queueSize, packed) || queueSize > maxQueueSize ||
            size < QueueBytes(queueSize, packed) * queues || size > MaxRegionBytes || offset > size || offset % 64 != 0)
            throw new VhostProtocolException($"SET_INFLIGHT_FD: {queues} queues of size {queueSize} in {size} bytes at offset {offset} is inconsistent");
        // A mapping past the end of the file would SIGBUS on first touch.
        if (fd.GetSize() < (long)(size + offset))
            throw new VhostProtocolException($"SET_INFLIGHT_FD: the fd holds {fd.GetSize()} bytes, fewer than offset {offset} + size {size}");
        var map = MappedRegion.Map(fd, size + offset, 0);
        Install(fd, map, vrings, queueSize, offset, packed);
    }

    private void Install(SafeFd fd, MappedRegion map, int vrings, ushort queueSize, ulong offset, bool packed)
    {
        _map?.Dispose();
        if (_fd is not null && _fd != fd) _fd.Dispose();
        _fd = fd;
        _map = map;
        QueueSize = queueSize;
        Split = new InflightQueue?[vrings];
        Packed = new PackedInflightQueue?[vrings];
        unsafe
        {
            ulong per = QueueBytes(queueSize, packed);
            for (int i = 0; i < vrings; i++)
            {
                ulong at = offset + per * (ulong)i;
                if (at + per > map.Length) continue;
                byte* p = (byte*)map.Address + at;
                if (packed) Packed[i] = new PackedInflightQueue(p, queueSize);
                else Split[i] = new InflightQueue(p, queueSize);
            }
        }
    }

    /// <summary>Device reset: the region described the old device; the front-end sends a new one.</summary>
    public void Forget()
    {
        Split = [];
        Packed = [];
    }

    public InflightQueue? SplitFor(int ring) => ring < Split.Length ? Split[ring] : null;
    public PackedInflightQueue? PackedFor(int ring) => ring < Packed.Length ? Packed[ring] : null;

    public void Dispose()
    {
        Forget();
        _map?.Dispose();
        _fd?.Dispose();
        _map = null;
        _fd = null;
    }
}
