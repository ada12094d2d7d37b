using VirtioSharp.Memory;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.VhostUser.Backend;

/// <summary>
/// The device IOTLB a vhost-user front-end fills when ACCESS_PLATFORM is negotiated (vhost-user.rst "IOMMU support"):
/// IOVA → front-end user address with permissions, then through the memory table to guest-physical memory. UPDATE
/// adds, INVALIDATE removes at once. A miss asks the front-end (IOTLB MISS on the back-end channel) and waits for the
/// UPDATE; the waiting happens on the queue's worker thread, never on the thread that reads the main socket.
/// </summary>
internal sealed class VhostIotlb : IAddressTranslator
{
    public const int MaxEntries = 8192;
    private readonly record struct Entry(ulong Iova, ulong Size, ulong Uaddr, byte Perm);

    private volatile Entry[] _entries = [];   // sorted by Iova, copy-on-write
    private readonly object _writeLock = new();
    private readonly object _updateSignal = new();
    private long _generation;

    public VhostIotlb(Func<VhostMemoryTable?> memory) => _memory = memory;
    private readonly Func<VhostMemoryTable?> _memory;

    /// <summary>Sends an IOTLB MISS (iova, perm); returns false if there is no back-end channel to ask on.</summary>
    public Func<ulong, byte, bool>? RequestMiss { get; set; }
    /// <summary>Reports ACCESS_FAIL (iova, perm).</summary>
    public Action<ulong, byte>? ReportAccessFail { get; set; }
    public int MissTimeoutMs { get; set; } = 5000;

    public long Hits;
    public long Misses;
    public long Updates;
    public long Invalidations;
    public long AccessFails;
    public int Count => _entries.Length;

    public void Update(ulong iova, ulong size, ulong uaddr, byte perm)
    {
        if (size == 0 || iova + size < iova || iova + size - 1 < iova || uaddr + size < uaddr)
            throw new Interop.VhostProtocolException($"IOTLB update iova 0x{iova:x} size 0x{size:x} uaddr 0x{uaddr:x}: empty or overflowing range");
        if (perm == IotlbMsgType.PermNone || perm > IotlbMsgType.PermReadWrite)
            throw new Interop.VhostProtocolException($"IOTLB update with invalid permission {perm}");
        lock (_writeLock)
        {
            var list = new List<Entry>(_entries.Length + 1);
            // A new mapping replaces whatever overlapped it.
            foreach (var e in _entries)
                if (e.Iova + e.Size <= iova || iova + size <= e.Iova) list.Add(e);
            if (list.Count >= MaxEntries) throw new Interop.VhostProtocolException($"IOTLB holds more than {MaxEntries} entries");
            list.Add(new Entry(iova, size, uaddr, perm));
            list.Sort((a, b) => a.Iova.CompareTo(b.Iova));
            _entries = list.ToArray();
            Interlocked.Increment(ref Updates);
        }
        lock (_updateSignal)
        {
            _generation++;
            Monitor.PulseAll(_updateSignal);
        }
    }

    public void Invalidate(ulong iova, ulong size)
    {
        ulong end = size == 0 || iova + size < iova ? ulong.MaxValue : iova + size;
        lock (_writeLock)
        {
            _entries = _entries.Where(e => e.Iova + e.Size <= iova || end <= e.Iova).ToArray();
            Interlocked.Increment(ref Invalidations);
        }
    }

    /// <summary>Wakes every worker waiting for an UPDATE so it re-checks whether its ring is being stopped.</summary>
    private int _missWaiters;

    /// <summary>
    /// A ring worker is waiting for the front-end to answer an IOTLB miss. While it waits it cannot reap its storage
    /// completions, so nothing on the message loop may wait for those (the answer comes through that loop).
    /// </summary>
    public bool MissPending => Volatile.Read(ref _missWaiters) > 0;

    public void WakeWaiters()
    {
        lock (_updateSignal) Monitor.PulseAll(_updateSignal);
    }

    public void Clear()
    {
        lock (_writeLock) _entries = [];
    }

    private static bool Find(Entry[] entries, ulong iova, out Entry found)
    {
        int lo = 0, hi = entries.Length - 1;
        while (lo <= hi)
        {
            int mid = (lo + hi) >>> 1;
            var e = entries[mid];
            if (iova < e.Iova) hi = mid - 1;
            else if (iova - e.Iova >= e.Size) lo = mid + 1;
            else { found = e; return true; }
        }
        found = default;
        return false;
    }

    public MemStatus Translate(ulong addr, Access access, out ulong gpa, out ulong contiguous)
    {
        byte need = (byte)(((access & Access.Read) != 0 ? IotlbMsgType.PermRead : 0) | ((access & Access.Write) != 0 ? IotlbMsgType.PermWrite : 0));
        if (!Find(_entries, addr, out var e))
        {
            Interlocked.Increment(ref Misses);
            var w = WaitForUpdate(addr, need, out e);
            if (w != MemStatus.Ok) { gpa = 0; contiguous = 0; return w; }
        }
        else Interlocked.Increment(ref Hits);
        if ((e.Perm & need) != need)
        {
            Interlocked.Increment(ref AccessFails);
            ReportAccessFail?.Invoke(addr, need);
            gpa = 0;
            contiguous = 0;
            return MemStatus.PermissionFault;
        }
        ulong uaddr = e.Uaddr + (addr - e.Iova);
        var mem = _memory();
        if (mem is null || !mem.TryUserToGpa(uaddr, out gpa, out ulong inRegion)) { gpa = 0; contiguous = 0; return MemStatus.Unmapped; }
        contiguous = Math.Min(inRegion, e.Size - (addr - e.Iova));
        return MemStatus.Ok;
    }

    /// <summary>Ok with the entry, TranslationFault (no answer, or none could be asked), or Interrupted (the ring is stopping).</summary>
    private MemStatus WaitForUpdate(ulong iova, byte perm, out Entry e)
    {
        e = default;
        var ask = RequestMiss;
        if (ask is null) return MemStatus.TranslationFault;
        var deadline = Environment.TickCount64 + MissTimeoutMs;
        Interlocked.Increment(ref _missWaiters);
        try { return WaitForUpdate(iova, perm, ask, deadline, out e); }
        finally { Interlocked.Decrement(ref _missWaiters); }
    }

    private MemStatus WaitForUpdate(ulong iova, byte perm, Func<ulong, byte, bool> ask, long deadline, out Entry e)
    {
        e = default;
        while (true)
        {
            long gen;
            lock (_updateSignal) gen = _generation;
            if (!ask(iova, perm)) return Vring.CurrentStopRequested ? MemStatus.Interrupted : MemStatus.TranslationFault;
            lock (_updateSignal)
            {
                // Wait for any update; an INVALIDATE may remove ours right after it lands (the guest flushed), in
                // which case we ask again rather than wait for an answer that already came.
                while (_generation == gen)
                {
                    // A ring being stopped or paused (GET_VRING_BASE, LOG_ALL toggled, a new memory table, reset,
                    // disconnect) must not wait out the miss timeout; nor is that the driver's fault: the queue
                    // leaves the chain it was walking available for the ring's next run.
                    if (Vring.CurrentStopRequested) return MemStatus.Interrupted;
                    long left = deadline - Environment.TickCount64;
                    if (left <= 0) return MemStatus.TranslationFault;
                    Monitor.Wait(_updateSignal, (int)left);
                }
            }
            if (Find(_entries, iova, out e)) return MemStatus.Ok;
            if (Environment.TickCount64 >= deadline) return MemStatus.TranslationFault;
        }
    }
}
