using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Platform;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Tests.Support;

/// <summary>How the device returns what it popped in one turn.</summary>
public enum UseMode { Single, Batch, Many }

/// <summary>One ring run under the store-buffer model.</summary>
public sealed record OrderingCase
{
    public bool Packed { get; init; }
    public bool EventIdx { get; init; } = true;
    public bool InOrder { get; init; }
    public UseMode Use { get; init; }
    /// <summary>The device pops until empty without disabling notifications (rng/console style: EVENT_IDX re-arms in Pop).</summary>
    public bool DevicePopsWithNotificationsOn { get; init; }
    public BarrierKind DeviceNeeds { get; init; } = BarrierKind.Platform;
    public BarrierKind DriverBarriers { get; init; } = BarrierKind.Platform;
    public BarrierKind DeviceBarriers { get; init; } = BarrierKind.Platform;
    public int Seed { get; init; } = 1;
    public int Chains { get; init; } = 160;
    public int Batch { get; init; } = 5;

    public override string ToString() =>
        $"{(Packed ? "packed" : "split")}{(EventIdx ? "+event-idx" : "")}{(InOrder ? "+in-order" : "")} use={Use}{(DevicePopsWithNotificationsOn ? " notify-on" : "")} " +
        $"needs={DeviceNeeds} driver={DriverBarriers} device={DeviceBarriers} seed={Seed}";
}

/// <summary>
/// A driver queue and a device queue on a simulated platform with store buffers, in a closed loop: the driver adds a
/// batch, kicks only if the device asks for it, and collects only on an interrupt (or when the model lets it poll
/// mid-turn); the device serves on a kick, suppressing notifications while it works, and by chance between two adds
/// (a polling device), and uses part of what it popped at once and the rest at its next turn (storage completing later). Every response is checked
/// (token, length, payload XOR 0x5A). Returns null when every chain came back right, else what went wrong: a stale
/// descriptor or used entry, a lost kick or interrupt (no progress), a broken queue.
/// </summary>
public static class OrderingRig
{
    private const byte Pattern = 0x5A;
    private const int HeadBytes = 8;
    private sealed record Request(ulong In, ulong Out, int Length, int Seed);

    public static string? Run(OrderingCase c)
    {
        using var platform = new SimPlatform(new SimPlatformOptions
        {
            Ordering = new OrderingOptions { Seed = c.Seed, DeviceNeeds = c.DeviceNeeds },
        });
        var model = platform.Ordering!;
        var dev = platform.Attach("ordering");
        ulong features = VirtioFeature.Bit(VirtioFeature.Version1)
            | (c.Packed ? VirtioFeature.Bit(VirtioFeature.RingPacked) : 0)
            | (c.EventIdx ? VirtioFeature.Bit(VirtioFeature.EventIdx) : 0)
            | (c.InOrder ? VirtioFeature.Bit(VirtioFeature.InOrder) : 0);
        var ops = new DirectDmaOps(platform);
        using var driver = new DriverQueue(ops, platform.Ram, 16, QueueOptions.FromFeatures(features, c.DriverBarriers) with { Ordering = model });
        var device = new DeviceQueue<DeviceMemory<TranslatorRef, PortRef>>(dev.Memory, driver.DeviceLayout,
            QueueOptions.FromFeatures(features, c.DeviceBarriers));

        var rng = new Random(c.Seed);
        var outstanding = new List<Request>();
        string? failure = null;
        int completed = 0;
        bool observing = false;
        var payload = new byte[512];
        var check = new byte[512];
        var expected = new byte[512];   // each role its own buffer: the observer runs in the middle of the device's turn
        var scratch = new byte[512];

        void Collect()
        {
            while (failure is null)
            {
                var st = driver.GetUsed(out var token, out uint len);
                if (st == QueueStatus.Empty) return;
                if (st != QueueStatus.Ok) { failure = $"driver queue broken: {driver.ErrorDetail}"; return; }
                var r = (Request)token!;
                if (!outstanding.Remove(r)) { failure = "a token came back twice"; return; }
                if (len != (uint)r.Length) { failure = $"used length {len}, expected {r.Length}: a stale used entry"; return; }
                platform.Ram.Read(r.Out, check.AsSpan(0, r.Length));
                Fill(expected.AsSpan(0, r.Length), r.Seed);
                for (int i = 0; i < r.Length; i++)
                    if (check[i] != (byte)(expected[i] ^ Pattern)) { failure = $"response byte {i} of a {r.Length}-byte chain is stale: used before its data{(observing ? " (seen by a poll in the middle of the device's turn)" : "")}"; return; }
                completed++;
            }
        }
        model.Observer = () => { observing = true; Collect(); observing = false; };   // a busy-polling driver looking between two device stores

        bool kicked = false, interrupted = false;
        var popped = new List<DescriptorChain>();   // served, not yet used (oldest first): a device completing later
        var written = new List<uint>();
        void UseSome(int n)
        {
            if (n == 0) return;
            Use(device, c.Use, popped.GetRange(0, n), written.GetRange(0, n));
            popped.RemoveRange(0, n);
            written.RemoveRange(0, n);
            if (device.NeedsInterrupt()) interrupted = true;
        }
        void DeviceTurn()
        {
            while (failure is null)
            {
                if (!c.DevicePopsWithNotificationsOn) device.DisableNotifications();
                while (true)
                {
                    var st = device.Pop(out var chain);
                    if (st == QueueStatus.Empty) break;
                    if (st != QueueStatus.Ok) { failure = $"device queue broken: {device.ErrorDetail}"; return; }
                    popped.Add(chain!);
                    written.Add(Serve(device, chain!, scratch));
                }
                // Some requests finish now, the rest at a later turn (as storage completes them).
                UseSome(rng.Next(popped.Count + 1));
                if (c.DevicePopsWithNotificationsOn || !device.EnableNotifications()) return;
            }
        }

        void OnInterrupt()
        {
            if (!interrupted || failure is not null) return;
            interrupted = false;
            driver.DisableCallbacks();
            Collect();
            while (failure is null && !driver.EnableCallbacks()) Collect();
        }

        int idle = 0;
        while (failure is null && completed < c.Chains)
        {
            if (outstanding.Count == 0)
            {
                for (int i = 0; i < c.Batch && completed + outstanding.Count < c.Chains; i++)
                {
                    int len = rng.Next(HeadBytes * 2, payload.Length + 1);
                    var r = new Request(platform.Allocator.Allocate((ulong)len), platform.Allocator.Allocate((ulong)len), len, rng.Next());
                    Fill(payload.AsSpan(0, len), r.Seed);
                    platform.Ram.Write(r.In, payload.AsSpan(0, len));
                    platform.Ram.Write(r.Out, new byte[len]);
                    // Two readable pieces: the first descriptor's length (what a stale packed used descriptor still holds)
                    // is never the used length.
                    if (driver.Add([new BufferSegment(r.In, HeadBytes), new BufferSegment(r.In + HeadBytes, (uint)(len - HeadBytes))],
                                   [new BufferSegment(r.Out, (uint)len)], r, out _) != QueueStatus.Ok)
                        return $"driver add failed: {driver.ErrorDetail}";
                    outstanding.Add(r);
                    // The device may be polling the ring right now (vhost busy-poll, a PMD): it looks between two adds.
                    if (rng.NextDouble() < 0.5) DeviceTurn();
                    OnInterrupt();
                }
                if (driver.KickPrepare()) kicked = true;
            }
            int before = completed;
            model.Tick();
            if (kicked) { kicked = false; DeviceTurn(); }
            model.Tick();
            OnInterrupt();
            if (failure is null) UseSome(popped.Count);   // the device completes what it held
            model.Tick();
            OnInterrupt();
            if (completed > before) idle = 0;
            else if (++idle > 200)
                failure = $"no progress with {outstanding.Count} chains outstanding: a lost kick or interrupt (device: {device.InFlight} in flight, " +
                    $"next avail {device.NextAvail}, next used {device.NextUsed}, {popped.Count} held; driver: {driver.Outstanding} outstanding, used pending {driver.HasUsed})";
        }
        driver.DetachUnused();
        return failure is null ? null : $"{c}: {failure} after {completed} chains ({model.Describe()})";
    }

    private static uint Serve<TMem>(DeviceQueue<TMem> q, DescriptorChain chain, byte[] scratch) where TMem : struct, IDeviceMemory
    {
        int len = (int)Math.Min(chain.ReadableBytes, (ulong)scratch.Length);
        var reader = new ChainReader<TMem>(q.Memory, chain);
        if (reader.Read(scratch.AsSpan(0, len), out int read) != MemStatus.Ok) return 0;
        var buf = new byte[read];
        for (int i = 0; i < read; i++) buf[i] = (byte)(scratch[i] ^ Pattern);
        var writer = new ChainWriter<TMem>(q.Memory, chain);
        writer.Write(buf, out _);
        return writer.Written;
    }

    private static void Use<TMem>(DeviceQueue<TMem> q, UseMode mode, List<DescriptorChain> chains, List<uint> written) where TMem : struct, IDeviceMemory
    {
        switch (mode)
        {
            case UseMode.Batch: q.AddUsedBatch(chains.ToArray(), written[^1]); break;
            case UseMode.Many: q.AddUsedMany(chains.ToArray(), written.ToArray()); break;
            default:
                for (int i = 0; i < chains.Count; i++) q.AddUsed(chains[i], written[i]);
                break;
        }
    }

    private static void Fill(Span<byte> dst, int seed)
    {
        uint x = (uint)seed | 1;
        for (int i = 0; i < dst.Length; i++)
        {
            x ^= x << 13; x ^= x >> 17; x ^= x << 5;
            dst[i] = (byte)x;
        }
    }
}
