using VirtioSharp.Dma;
using VirtioSharp.Memory;

namespace VirtioSharp.Platform;

/// <summary>
/// Store buffers on both sides of the ring. CPU side: the driver writes its rings through host pointers; the device sees
/// the last drained copy of that memory (a shadow), and a store reaches the shadow only when a barrier strong enough for
/// this device drains everything before it, or by chance at a drain point, in any order, 2 bytes (the narrowest ring
/// field) at a time. Device side: the device's writes wait in a buffer and drain in order at a strong enough barrier,
/// or singly and out of order by chance (never past an older store to the same bytes); the device reads its own buffered stores (store forwarding). An SMP barrier
/// drains nothing toward a device that needs platform ordering (<see cref="OrderingOptions.DeviceNeeds"/>), which is
/// exactly the difference between weak_barriers and ORDER_PLATFORM. Notifications carry no ordering here (a polling
/// device reads the ring without waiting for one). Single-threaded and seeded, like the rest of the machine.
/// </summary>
public sealed class StoreBufferModel : ICpuOrdering
{
    private const int Granule = 2;

    private sealed class Region(ulong gpa, byte[] shadow)
    {
        public readonly ulong Gpa = gpa;
        public readonly byte[] Shadow = shadow;
        public readonly byte[] Now = new byte[shadow.Length];   // RAM as it is, read to compare
        public ulong End => Gpa + (ulong)Shadow.Length;
    }

    private readonly record struct Store(SimBusPort Port, ulong Gpa, byte[] Data);

    private readonly GuestMemory _ram;
    private readonly Random _rng;
    private readonly List<Region> _regions = new();
    private readonly List<Store> _deviceStores = new();
    private bool _observing;

    /// <summary>A model over <paramref name="ram"/> as <paramref name="options"/> say.</summary>
    public StoreBufferModel(GuestMemory ram, OrderingOptions options)
    {
        _ram = ram;
        Options = options;
        _rng = new Random(options.Seed);
    }

    /// <summary>How the model was configured.</summary>
    public OrderingOptions Options { get; }
    /// <summary>
    /// The driver, polling its used rings (e.g. <c>VirtioDriverDevice.PollUsed</c>), run at random device accesses.
    /// Its kicks must be deferred (<see cref="SimMachine.Deferred"/>), or the device would be re-entered.
    /// </summary>
    public Action? Observer { get; set; }
    /// <summary>CPU barriers that drained the CPU's buffer toward the device.</summary>
    public long CpuDrains { get; private set; }
    /// <summary>CPU write/full barriers too weak for this device: they drained nothing.</summary>
    public long CpuWeakBarriers { get; private set; }
    /// <summary>Device barriers that drained the device's buffer.</summary>
    public long DeviceDrains { get; private set; }
    /// <summary>Device write/full barriers too weak for this platform: they drained nothing.</summary>
    public long DeviceWeakBarriers { get; private set; }
    /// <summary>Stores that drained on their own, out of order (both sides).</summary>
    public long ChanceDrains { get; private set; }
    /// <summary>Times the driver polled in the middle of a device's turn.</summary>
    public long Observations { get; private set; }
    /// <summary>Device stores still buffered.</summary>
    public int PendingDeviceStores => _deviceStores.Count;

    /// <summary>Bytes of tracked ring memory the CPU wrote that the device cannot see yet.</summary>
    public int PendingCpuBytes
    {
        get
        {
            int n = 0;
            foreach (var r in _regions)
            {
                var ram = RamOf(r);
                for (int i = 0; i < ram.Length; i++) if (ram[i] != r.Shadow[i]) n++;
            }
            return n;
        }
    }

    private Span<byte> RamOf(Region r)
    {
        _ram.Read(r.Gpa, r.Now);
        return r.Now;
    }

    private bool Strong(BarrierKind strength) => strength >= Options.DeviceNeeds;

    /// <inheritdoc/>
    public void Track(ulong gpa, ulong length)
    {
        var shadow = new byte[length];
        _ram.Read(gpa, shadow);
        _regions.Add(new Region(gpa, shadow));
    }

    /// <inheritdoc/>
    public void Untrack(ulong gpa, ulong length) => _regions.RemoveAll(r => r.Gpa == gpa && (ulong)r.Shadow.Length == length);

    /// <inheritdoc/>
    public void Barrier(BarrierOp op, BarrierKind strength)
    {
        if (op == BarrierOp.Read) return;   // a store buffer reorders stores only
        if (!Strong(strength)) { CpuWeakBarriers++; return; }
        CpuDrains++;
        foreach (var r in _regions) _ram.Read(r.Gpa, r.Shadow);
    }

    /// <summary>Time passes (the machine is polled): buffered stores on both sides may drain.</summary>
    public void Tick()
    {
        DrainCpuByChance();
        DrainDeviceByChance();
    }

    private void DrainCpuByChance()
    {
        foreach (var r in _regions)
        {
            var ram = RamOf(r);
            var shadow = r.Shadow.AsSpan();
            for (int at = 0; at < ram.Length; at += 64)
            {
                int n = Math.Min(64, ram.Length - at);
                if (ram.Slice(at, n).SequenceEqual(shadow.Slice(at, n))) continue;
                for (int g = at; g < at + n; g += Granule)
                {
                    int k = Math.Min(Granule, ram.Length - g);
                    if (ram.Slice(g, k).SequenceEqual(shadow.Slice(g, k)) || _rng.NextDouble() >= Options.DrainChance) continue;
                    ram.Slice(g, k).CopyTo(shadow.Slice(g, k));
                    ChanceDrains++;
                }
            }
        }
    }

    private void DrainDeviceByChance()
    {
        for (int i = 0; i < _deviceStores.Count;)
        {
            // Out of order, but never past an older store to the same bytes: per-location order holds on every CPU.
            if (_rng.NextDouble() < Options.DrainChance && !OverlapsOlder(i))
            {
                var s = _deviceStores[i];
                _deviceStores.RemoveAt(i);
                Commit(s);
                ChanceDrains++;
            }
            else i++;
        }
    }

    private bool OverlapsOlder(int i)
    {
        var s = _deviceStores[i];
        ulong end = s.Gpa + (ulong)s.Data.Length;
        for (int j = 0; j < i; j++)
        {
            var o = _deviceStores[j];
            if (o.Gpa < end && s.Gpa < o.Gpa + (ulong)o.Data.Length) return true;
        }
        return false;
    }

    // A device access is a moment of the device's turn: stores may drain, and the driver may look.
    private void DeviceStep()
    {
        DrainCpuByChance();
        DrainDeviceByChance();
        if (Observer is { } o && !_observing && _rng.NextDouble() < Options.ObserveChance)
        {
            _observing = true;
            Observations++;
            try { o(); }
            finally { _observing = false; }
        }
    }

    /// <summary>
    /// What a device read of guest-physical [gpa, gpa+dst.Length) sees, given <paramref name="dst"/> already filled from
    /// memory: tracked ring memory as last drained, then the device's own buffered stores.
    /// </summary>
    internal void DeviceRead(ulong gpa, Span<byte> dst)
    {
        DeviceStep();
        ulong end = gpa + (ulong)dst.Length;
        foreach (var r in _regions)
        {
            ulong s = Math.Max(gpa, r.Gpa), e = Math.Min(end, r.End);
            if (s < e) r.Shadow.AsSpan((int)(s - r.Gpa), (int)(e - s)).CopyTo(dst[(int)(s - gpa)..]);
        }
        foreach (var st in _deviceStores)
        {
            ulong s = Math.Max(gpa, st.Gpa), e = Math.Min(end, st.Gpa + (ulong)st.Data.Length);
            if (s < e) st.Data.AsSpan((int)(s - st.Gpa), (int)(e - s)).CopyTo(dst[(int)(s - gpa)..]);
        }
    }

    /// <summary>A device write: buffered until a strong enough device barrier, or chance, drains it.</summary>
    internal void DeviceWrite(SimBusPort port, ulong gpa, ReadOnlySpan<byte> src)
    {
        DeviceStep();
        _deviceStores.Add(new Store(port, gpa, src.ToArray()));
    }

    /// <summary>A barrier of the device's queue.</summary>
    internal void DeviceBarrier(BarrierOp op, BarrierKind strength)
    {
        DeviceStep();
        if (op == BarrierOp.Read) return;
        if (!Strong(strength)) { DeviceWeakBarriers++; return; }
        DeviceDrains++;
        foreach (var s in _deviceStores) Commit(s);
        _deviceStores.Clear();
    }

    private void Commit(Store s)
    {
        s.Port.Commit(s.Gpa, s.Data);
        // The device's own write is what it has seen there: not a CPU store still in flight.
        ulong end = s.Gpa + (ulong)s.Data.Length;
        foreach (var r in _regions)
        {
            ulong a = Math.Max(s.Gpa, r.Gpa), e = Math.Min(end, r.End);
            if (a < e) s.Data.AsSpan((int)(a - s.Gpa), (int)(e - a)).CopyTo(r.Shadow.AsSpan((int)(a - r.Gpa)));
        }
    }

    /// <summary>One line for a scenario's evidence.</summary>
    public string Describe() =>
        $"ordering model (device needs {Options.DeviceNeeds} barriers, seed {Options.Seed}): CPU drains {CpuDrains}, CPU barriers too weak {CpuWeakBarriers}, " +
        $"device drains {DeviceDrains}, device barriers too weak {DeviceWeakBarriers}, stores drained out of order {ChanceDrains}, driver polls mid-turn {Observations}";
}
