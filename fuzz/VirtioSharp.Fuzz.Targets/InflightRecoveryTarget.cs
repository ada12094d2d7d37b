using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// Inflight region recovery (vhost-user.rst "Inflight I/O tracking"), split and packed: the fuzzer writes the region a
/// crashed back-end left and the rings, then the real ring start path (<c>VringRecovery.Prepare</c>) recovers from it
/// and the queue serves; "restart" ops kill the back-end mid-stream and recover again from the region our own code
/// wrote. Input: flags, size byte, vring base (u32), region bytes (the queue's whole area), then ops (<see cref="Op"/>).
/// Oracle: recovery either refuses with a reason or yields a queue that keeps the chain promises; after a restart
/// from our own region, every chain still in flight is resubmitted, no more and no fewer.
/// </summary>
public static unsafe class InflightRecoveryTarget
{
    public const int MaxOps = 128;
    private const ulong RegionSize = 0x8000, Uaddr = 0x7f00_0000_0000, Desc = 0x0, Avail = 0x1000, Used = 0x2000;

    /// <summary>Op codes, the first byte of each op modulo the count.</summary>
    public enum Op : byte { Poke, PokeU16, Pop, AddUsed, AddUsedBatch, Restart }

    /// <summary>Flag bits of the first input byte.</summary>
    [Flags]
    public enum Config : byte { Packed = 1, EventIdx = 2, InOrder = 4, Indirect = 8, StampHeader = 16 }

    private sealed class Area(VhostInflightState state, MappedRegion view)
    {
        public VhostInflightState State { get; } = state;
        public MappedRegion View { get; } = view;
    }

    private static readonly SafeFd RamFd = MemFd.Create("fuzz-ram", RegionSize);
    private static readonly VhostMemoryTable Table = VhostMemoryTable.Build([(new VhostMemoryRegion(0, RegionSize, Uaddr, 0), MappedRegion.Map(RamFd, RegionSize, 0))]);
    private static readonly Dictionary<(bool, ushort), Area> Areas = new();
    private static readonly VhostIotlb Iotlb = new(() => Table);
    private static readonly byte[] Zeros = new byte[RegionSize];

    private static Area AreaFor(bool packed, ushort size)
    {
        if (Areas.TryGetValue((packed, size), out var a)) return a;
        var state = new VhostInflightState();
        var (fd, bytes) = state.Create(1, 1, size, 16, packed);
        a = new Area(state, MappedRegion.Map(fd, bytes, 0));
        Areas[(packed, size)] = a;
        return a;
    }

    public static void Run(ReadOnlySpan<byte> input)
    {
        var c = new ByteCursor(input);
        var cfg = (Config)c.U8();
        bool packed = cfg.HasFlag(Config.Packed);
        ushort size = RingShape.Size(packed, c.U8());
        uint vringBase = c.U32();
        if (!packed) vringBase &= 0xFFFF;   // the back-end refuses wider split bases before a ring starts
        var area = AreaFor(packed, size);
        var region = new Span<byte>((void*)area.View.Address, (int)area.View.Length);
        region.Clear();
        c.Bytes(region.Length).CopyTo(region);
        if (cfg.HasFlag(Config.StampHeader))
        {
            // Version 1 and this queue's size: the header a real previous back-end leaves, so recovery runs.
            region[8] = 1; region[9] = 0;
            region[10] = (byte)size; region[11] = (byte)(size >> 8);
        }
        var ram = Table.Memory;
        ram.Write(0, Zeros);

        ulong features = VirtioFeature.Bit(VirtioFeature.Version1);
        if (packed) features |= VirtioFeature.Bit(VirtioFeature.RingPacked);
        if (cfg.HasFlag(Config.EventIdx)) features |= VirtioFeature.Bit(VirtioFeature.EventIdx);
        if (cfg.HasFlag(Config.InOrder)) features |= VirtioFeature.Bit(VirtioFeature.InOrder);
        if (cfg.HasFlag(Config.Indirect)) features |= VirtioFeature.Bit(VirtioFeature.IndirectDesc);
        var opts = QueueOptions.FromFeatures(features);
        var stats = new VhostStats();
        var held = new List<DescriptorChain>();
        var splitHeads = new HashSet<ushort>();   // heads the split log should still mark in flight
        int carried = 0;                           // resubmitted at the last start and not popped yet
        Span<byte> scratch = stackalloc byte[2048];
        bool usedPoked = false;
        var q = Start(size, vringBase, features, area, stats);
        bool trusted = q is not null;   // the region now holds only what our own code wrote
        carried = (int)stats.Resubmitted;
        for (int n = 0; n < MaxOps && c.More; n++)
        {
            switch ((Op)(c.U8() % 6))
            {
                case Op.Poke:
                {
                    ulong at = c.U16() % 0x4000UL;
                    var bytes = c.Bytes(c.U8() % 32);
                    ulong usedEnd = Used + (packed ? PackedRing.EventBytes : SplitRingLayout.UsedBytes(size));
                    ulong descEnd = Desc + (packed ? PackedRing.DescBytes(size) : 0UL);
                    // The device's own ring state (used ring, packed descriptors) decides recovery: a driver that
                    // scribbles over it voids the resubmission count.
                    if ((at < usedEnd && at + (ulong)bytes.Length > Used) || (at < descEnd && at + (ulong)bytes.Length > Desc)) usedPoked = true;
                    ram.Write(at, bytes);
                    break;
                }
                case Op.PokeU16:
                {
                    byte pick = c.U8();
                    ushort v = c.U16();
                    ulong at = packed ? Desc + (ulong)(pick % size) * PackedDesc.Size + PackedDesc.FlagsOffset
                        : pick % 2 == 0 ? Avail + 2 : Avail + 4 + 2UL * (ulong)(pick / 2 % size);
                    if (packed) usedPoked = true;
                    ram.StoreU16(at, v);
                    break;
                }
                case Op.Pop:
                {
                    if (q is null) break;
                    if (q.Pop(out var chain) != QueueStatus.Ok) break;
                    ChainOracle.Check(ram, chain!, opts, scratch);
                    held.Add(chain!);
                    splitHeads.Add(chain!.Head);
                    if (carried > 0) carried--;   // resubmitted chains come first
                    break;
                }
                case Op.AddUsed:
                {
                    byte pick = c.U8(), len = c.U8();
                    if (q is null || held.Count == 0) break;
                    var chain = held[opts.InOrder ? 0 : pick % held.Count];
                    held.Remove(chain);
                    if (q.AddUsed(chain, ChainOracle.Fill(q.Memory, chain, len, scratch)) == QueueStatus.Ok) splitHeads.Remove(chain.Head);
                    break;
                }
                case Op.AddUsedBatch:
                {
                    byte count = c.U8(), len = c.U8();
                    if (q is null || !opts.InOrder || held.Count == 0) break;
                    int k = count % held.Count + 1;
                    var batch = held.GetRange(0, k).ToArray();
                    held.RemoveRange(0, k);
                    for (int i = 0; i < k - 1; i++) ChainOracle.Fill(q.Memory, batch[i], 255, scratch);
                    if (q.AddUsedBatch(batch, ChainOracle.Fill(q.Memory, batch[^1], len, scratch)) == QueueStatus.Ok)
                        foreach (var b in batch) splitHeads.Remove(b.Head);
                    break;
                }
                case Op.Restart:
                {
                    // The back-end dies here; a new one recovers from the region and the rings as they are now.
                    // The front-end resends a base from an earlier start, so one that fits the ring.
                    uint newBase = c.U32();
                    newBase = packed ? (newBase & 0x8000_8000) | (newBase & 0x7FFF) % size | ((newBase >> 16 & 0x7FFF) % size) << 16 : newBase & 0xFFFF;
                    bool broken = q?.IsBroken ?? true;
                    // A split log knows heads, not chains: a head the driver made available again while in flight is
                    // one entry, and using either instance clears it. Expected: heads whose last event was a pop.
                    int expect = (packed ? held.Count : splitHeads.Count) + carried;
                    long before = stats.Resubmitted;
                    held.Clear();
                    splitHeads.Clear();
                    q = Start(size, newBase, features, area, stats);
                    if (trusted && !broken && !usedPoked)
                    {
                        Invariant.That(q is not null, "recovery refused a region our own back-end wrote");
                        Invariant.That(stats.Resubmitted - before == expect, $"{expect} chains were in flight at the crash, {stats.Resubmitted - before} were resubmitted");
                    }
                    trusted = q is not null;
                    usedPoked = false;
                    // What was resubmitted is in flight again until the device pops and uses it.
                    carried = (int)(stats.Resubmitted - before);
                    break;
                }
            }
            if (q is not null) Invariant.That(q.InFlight == held.Count, $"queue counts {q.InFlight} in flight, the device holds {held.Count}");
        }
    }

    private static DeviceQueue<DeviceMemory<TranslatorRef, RamPort>>? Start(ushort size, uint vringBase, ulong features, Area area, VhostStats stats)
    {
        using var v = new Vring(0) { Num = size, DescAddr = Uaddr + Desc, AvailAddr = Uaddr + Avail, UsedAddr = Uaddr + Used, AddrSet = true, Base = vringBase };
        var q = VringRecovery.Prepare(v, Table, features, Iotlb, new DirtyLog(), area.State, TriageLogger.Instance, stats, out _, out _, out string? failure);
        Invariant.That((q is null) == (failure is not null), "Prepare returned neither a queue nor a reason, or both");
        return q;
    }
}
