using System.Buffers.Binary;
using VirtioSharp.Dma;
using VirtioSharp.Interop;
using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Frontend;

/// <summary>
/// The front-end as the device's IOMMU (vhost-user.rst "IOMMU support"): the driver's <see cref="IommuDmaOps"/> program
/// this domain's page table; the back-end, which negotiated ACCESS_PLATFORM, knows only IOVAs and asks for each it
/// lacks with an IOTLB MISS on the back-end channel, answered here with an IOTLB UPDATE on the main socket (only for a
/// page that is mapped, with only the permissions it was mapped with: a to-device buffer is never writable). An
/// invalidation is an IOTLB INVALIDATE that waits for the back-end's REPLY_ACK, so once it returns the back-end no longer
/// reaches the page — strictly per unmap or in batches, as the ops' <see cref="InvalidationMode"/> says.
/// Everything read from the back-end channel is validated; a malformed message ends the channel, not the process.
/// </summary>
public sealed class VhostIommuDomain : IIommuDomain
{
    private const ulong PageSize = 4096;
    private const ulong MaxRunPages = 256;   // at most 1 MiB per UPDATE
    private readonly Lock _lock = new();
    // An UPDATE is looked up and sent under this lock, and so is every INVALIDATE: an answer looked up before an unmap
    // can never reach the back-end after that unmap's invalidation (it would leave a stale translation there).
    private readonly Lock _sendLock = new();
    private readonly Dictionary<ulong, (ulong Gpa, Access Perm)> _pages = new();
    // Start IOVAs of UPDATEs not invalidated since (under _sendLock). A hash set, not a sorted one: adding allocates
    // nothing once it has grown, so answering a miss allocates nothing; an invalidation scans it (few live answers).
    private readonly HashSet<ulong> _answered = new();
    private readonly List<ulong> _gone = new();   // under _sendLock: answers an invalidation covers
    private readonly Func<ulong, ulong> _userAddress;
    private readonly Action<ulong, ulong, ulong, byte, byte> _sendIotlb;
    private readonly bool _writableReadable;
    private long _misses, _updates, _invalidations, _unanswered;
    // The last unanswered miss, kept as numbers and described only when asked (a refused miss allocates nothing).
    private (ulong Iova, Access Need, Access Mapped, bool IsMapped)? _lastUnanswered;

    internal VhostIommuDomain(ulong apertureBase, ulong apertureSize, Func<ulong, ulong> userAddress, Action<ulong, ulong, ulong, byte, byte> sendIotlb,
        bool writableImpliesReadable = false)
    {
        _writableReadable = writableImpliesReadable;
        ApertureBase = apertureBase;
        ApertureSize = apertureSize;
        _userAddress = userAddress;
        _sendIotlb = sendIotlb;
    }

    /// <inheritdoc/>
    public ulong ApertureBase { get; }
    /// <inheritdoc/>
    public ulong ApertureSize { get; }
    /// <summary>IOTLB MISS messages received from the back-end.</summary>
    public long Misses => Interlocked.Read(ref _misses);
    /// <summary>IOTLB UPDATE messages sent (answers to misses).</summary>
    public long Updates => Interlocked.Read(ref _updates);
    /// <summary>IOTLB INVALIDATE messages sent (each confirmed by the back-end).</summary>
    public long Invalidations => Interlocked.Read(ref _invalidations);
    /// <summary>Misses for an IOVA that is not mapped (or not with the permission asked): not answered, the back-end faults.</summary>
    public long UnansweredMisses => Interlocked.Read(ref _unanswered);
    /// <summary>The last miss that was not answered, and why (diagnostics).</summary>
    public string? LastUnanswered
    {
        get
        {
            var u = _lastUnanswered;
            return u is not { } l ? null
                : l.IsMapped ? $"iova 0x{l.Iova:x}: {l.Need} asked, mapped {l.Mapped}" : $"iova 0x{l.Iova:x}: {l.Need} asked, not mapped";
        }
    }
    /// <summary>Pages mapped now.</summary>
    public int MappedPages { get { lock (_lock) return _pages.Count; } }

    /// <inheritdoc/>
    public void MapPage(ulong iova, ulong gpa, Access permissions)
    {
        lock (_lock) _pages[iova & ~(PageSize - 1)] = (gpa & ~(PageSize - 1), permissions);
    }

    /// <inheritdoc/>
    public void UnmapPage(ulong iova)
    {
        lock (_lock) _pages.Remove(iova & ~(PageSize - 1));
    }

    /// <inheritdoc/>
    public void InvalidateRange(ulong iova, ulong length)
    {
        if (length == 0) return;
        Interlocked.Increment(ref _invalidations);
        lock (_sendLock)
        {
            _sendIotlb(iova, length, 0, IotlbMsgType.PermNone, IotlbMsgType.Invalidate);
            ulong last = iova + (length - 1) < iova ? ulong.MaxValue : iova + (length - 1);
            _gone.Clear();
            foreach (ulong a in _answered) if (a >= iova && a <= last) _gone.Add(a);
            foreach (ulong a in _gone) _answered.Remove(a);
        }
    }

    /// <inheritdoc/>
    public void InvalidateAll() => InvalidateRange(ApertureBase, ApertureSize);

    private Access Granted(Access mapped) => _writableReadable && (mapped & Access.Write) != 0 ? mapped | Access.Read : mapped;

    private static Access Needed(byte perm) => (Access)(perm & IotlbMsgType.PermReadWrite);

    /// <summary>Answers one MISS: an UPDATE for the page if it is mapped with at least the asked permission.</summary>
    internal void OnMiss(ulong iova, byte perm)
    {
        Interlocked.Increment(ref _misses);
        ulong page = iova & ~(PageSize - 1);
        var need = Needed(perm);
        lock (_sendLock)
        {
            (ulong Gpa, Access Perm) e;
            bool mapped;
            lock (_lock) mapped = _pages.TryGetValue(page, out e);
            // VhostUserFrontendOptions.IommuWritableImpliesReadable: a device-writable page is readable too.
            if (mapped) e.Perm = Granted(e.Perm);
            // Not mapped: a buffer never mapped (the back-end faults), or a second miss for a page that an earlier
            // answer already covered and whose request has completed and been unmapped since (harmless).
            if (!mapped || (e.Perm & need) != need)
            {
                Interlocked.Increment(ref _unanswered);
                _lastUnanswered = (iova, need, e.Perm, mapped);
                return;
            }
            // One answer covers the run of pages around the miss that are contiguous in IOVA and guest-physical
            // address with the same permissions (a mapped buffer is such a run): one miss per buffer, not per page.
            ulong first = page, last = page;
            lock (_lock)
            {
                while (last - first < MaxRunPages * PageSize && _pages.TryGetValue(last + PageSize, out var n) && Granted(n.Perm) == e.Perm && n.Gpa == e.Gpa + (last + PageSize - page)) last += PageSize;
                while (last - first < MaxRunPages * PageSize && first > PageSize && _pages.TryGetValue(first - PageSize, out var p) && Granted(p.Perm) == e.Perm && p.Gpa + (page - first + PageSize) == e.Gpa) first -= PageSize;
            }
            // DPDK's IOTLB cache keeps the first entry for an IOVA and drops a later UPDATE that starts at the same IOVA
            // (lib/vhost iotlb.c): a run that would start where an earlier answer did starts at the missed page instead.
            if (first != page && _answered.Contains(first)) first = page;
            _answered.Add(first);
            Interlocked.Increment(ref _updates);
            _sendIotlb(first, last - first + PageSize, _userAddress(e.Gpa - (page - first)), (byte)e.Perm, IotlbMsgType.Update);
        }
    }

    /// <summary>
    /// Reads the back-end channel until it closes: each message is a 12-byte header and, for IOTLB_MSG, a 32-byte
    /// vhost_iotlb_msg. The whole message is validated before anything is done for it: anything else (another request,
    /// a wrong size, a reply asked for, file descriptors, an unknown type or permission) ends the channel unanswered.
    /// Allocates nothing per message (the header and body buffers live on this thread's stack).
    /// </summary>
    internal void Serve(FdSocket channel, Action<string> fault)
    {
        Span<byte> hb = stackalloc byte[VhostHeader.Length];
        Span<byte> body = stackalloc byte[IotlbMsgType.Length];
        var fds = new List<SafeFd>(FdSocket.MaxFds);
        try
        {
            while (true)
            {
                fds.Clear();
                if (!channel.ReceiveExact(hb, fds)) return;
                int nfds = fds.Count;
                foreach (var fd in fds) fd.Dispose();   // owned and closed at once, whatever follows
                var h = VhostHeader.Parse(hb);
                if (h.Request != (uint)VhostBackendRequest.IotlbMsg || h.Size != IotlbMsgType.Length)
                {
                    fault($"back-end channel: request {h.Request} of {h.Size} bytes is not an IOTLB message; closing the channel");
                    return;
                }
                // vhost-user.rst "IOMMU support": a reply to a miss only with REPLY_ACK negotiated on the channel, which
                // this front-end never offers; BACKEND_SEND_FD is not negotiated either.
                if (h.NeedReply || (h.Flags & VhostHeader.VersionMask) != VhostHeader.Version || nfds > 0)
                {
                    fault($"back-end channel: IOTLB message with flags 0x{h.Flags:x} and {nfds} file descriptors (a reply was asked for, or a wrong version, or descriptors not negotiated); closing the channel");
                    return;
                }
                if (!channel.ReceiveExact(body, null)) return;
                ulong iova = BinaryPrimitives.ReadUInt64LittleEndian(body);
                byte perm = body[24], type = body[25];
                if (perm > IotlbMsgType.PermReadWrite || type is not (IotlbMsgType.Miss or IotlbMsgType.AccessFail))
                {
                    fault($"back-end channel: IOTLB message type {type} perm {perm} is not a MISS; closing the channel");
                    return;
                }
                if (type == IotlbMsgType.Miss) OnMiss(iova, perm);
                else fault($"back-end reports an IOTLB access failure at iova 0x{iova:x} (perm {perm})");
            }
        }
        catch (Exception e) when (e is IOException or VhostProtocolException or ObjectDisposedException)
        {
            fault($"back-end channel: {e.Message}");
        }
    }
}
