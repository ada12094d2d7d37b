using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// The device side of a split or packed ring over guest memory the fuzzer writes as the driver: pop, read and write
/// chains, add used (one by one, or IN_ORDER batches), notification suppression, reset, with driver writes between
/// every step. Input: flags byte, size byte, placement byte, max-chain byte, then ops (see <see cref="Op"/>).
/// Oracle: a popped chain is consistent and fully reachable, in-flight counts agree, a broken queue stays broken.
/// </summary>
public static class DeviceRingTarget
{
    public const int MaxOps = 256;

    /// <summary>Op codes, the first byte of each op modulo the count.</summary>
    public enum Op : byte { Poke, Pop, AddUsed, AddUsedBatch, NeedsInterrupt, Notifications, HasAvailable, NotificationData, Reset, PokeU16 }

    /// <summary>Flag bits of the first input byte.</summary>
    [Flags]
    public enum Config : byte { Packed = 1, EventIdx = 2, Indirect = 4, InOrder = 8 }

    public static (ushort Size, ulong Desc, ulong Driver, ulong Device) Placement(bool packed, byte sizeByte, byte placement)
    {
        ushort size = RingShape.Size(packed, sizeByte);
        ulong descBytes = packed ? PackedRing.DescBytes(size) : SplitRingLayout.DescBytes(size);
        ulong usedBytes = packed ? PackedRing.EventBytes : SplitRingLayout.UsedBytes(size);
        return (placement % 3) switch
        {
            0 => (size, 0x0000, 0x1000, 0x2000),
            1 => (size, FuzzGuestMemory.HighGpa, FuzzGuestMemory.HighGpa + 0x800, FuzzGuestMemory.HighGpa + 0x1000),
            // The device area ends on the last byte of the low region.
            _ => (size, 0x3000, 0x3000 + descBytes, (FuzzGuestMemory.LowSize - usedBytes) & ~3UL),
        };
    }

    public static void Run(ReadOnlySpan<byte> input)
    {
        var gm = FuzzGuestMemory.Shared;
        gm.Clear();
        var c = new ByteCursor(input);
        var cfg = (Config)c.U8();
        bool packed = cfg.HasFlag(Config.Packed);
        var (size, desc, driver, device) = Placement(packed, c.U8(), c.U8());
        var opts = new QueueOptions
        {
            Packed = packed,
            EventIdx = cfg.HasFlag(Config.EventIdx),
            IndirectDesc = cfg.HasFlag(Config.Indirect),
            InOrder = cfg.HasFlag(Config.InOrder),
            MaxChainLength = c.U8() % 64 + 1,
        };
        var layout = new SplitRingLayout(size, desc, driver, device, opts.EventIdx, RingEndian.Little);
        var mem = gm.DeviceView;
        var q = new DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>>(mem, layout, opts);
        Invariant.That(q.CheckRings() == MemStatus.Ok, "rings inside backed memory were refused");
        var inFlight = new List<DescriptorChain>();
        Span<byte> scratch = stackalloc byte[4096];
        for (int n = 0; n < MaxOps && c.More; n++)
        {
            switch ((Op)(c.U8() % 10))
            {
                case Op.Poke:
                {
                    ulong at = c.U16() % FuzzGuestMemory.Span;
                    gm.Poke(at, c.Bytes(c.U8() % 64));
                    break;
                }
                case Op.PokeU16:
                    // Ring indexes and flags: the field chosen by slot, so small inputs reach them.
                    gm.PokeU16(RingField(layout, packed, c.U8()), c.U16());
                    break;
                case Op.Pop:
                {
                    bool wasBroken = q.IsBroken;
                    var st = q.Pop(out var chain);
                    if (wasBroken) Invariant.That(st == QueueStatus.Broken, $"a broken queue popped {st}");
                    if (st == QueueStatus.Broken) Invariant.That(q.IsBroken && q.ErrorDetail is not null, "Broken status without an error");
                    if (st != QueueStatus.Ok) { Invariant.That(chain is null, $"{st} pop returned a chain"); break; }
                    ChainOracle.Check(gm.Memory, chain!, opts, scratch);
                    Invariant.That(!inFlight.Contains(chain!), "pop returned a chain object that is still in flight");
                    inFlight.Add(chain!);
                    break;
                }
                case Op.AddUsed:
                {
                    byte pick = c.U8(), len = c.U8();
                    if (inFlight.Count == 0) break;
                    // IN_ORDER devices use chains in pop order (AddUsed throws otherwise).
                    var chain = inFlight[opts.InOrder ? 0 : pick % inFlight.Count];
                    uint written = ChainOracle.Fill(mem, chain, len, scratch);
                    inFlight.Remove(chain);
                    var st = q.AddUsed(chain, written);
                    Invariant.That(st is QueueStatus.Ok or QueueStatus.Broken, $"AddUsed returned {st}");
                    break;
                }
                case Op.AddUsedBatch:
                {
                    byte count = c.U8(), len = c.U8();
                    if (!opts.InOrder || inFlight.Count == 0) break;
                    int k = count % inFlight.Count + 1;
                    var batch = inFlight.GetRange(0, k).ToArray();
                    for (int i = 0; i < k - 1; i++) ChainOracle.Fill(mem, batch[i], 255, scratch);
                    uint last = ChainOracle.Fill(mem, batch[^1], len, scratch);
                    inFlight.RemoveRange(0, k);
                    var st = q.AddUsedBatch(batch, last);
                    Invariant.That(st is QueueStatus.Ok or QueueStatus.Broken, $"AddUsedBatch returned {st}");
                    break;
                }
                case Op.NeedsInterrupt: q.NeedsInterrupt(); break;
                case Op.Notifications:
                    if (c.U8() % 2 == 0) q.DisableNotifications(); else q.EnableNotifications();
                    break;
                case Op.HasAvailable:
                    if (q.HasAvailable()) Invariant.That(!q.IsBroken, "a broken queue reports available chains");
                    break;
                case Op.NotificationData: q.AcceptNotificationData(c.U16()); break;
                case Op.Reset:
                    q.Reset();
                    inFlight.Clear();
                    Invariant.That(!q.IsBroken && q.InFlight == 0 && q.NextAvail == 0 && q.NextUsed == 0, "reset left state behind");
                    break;
            }
            Invariant.That(q.InFlight == inFlight.Count, $"queue counts {q.InFlight} chains in flight, the device holds {inFlight.Count}");
            Invariant.That(q.InFlight <= size, $"{q.InFlight} chains in flight on a {size}-entry ring");
        }
    }

    private static ulong RingField(SplitRingLayout l, bool packed, byte pick)
    {
        if (packed)
            return (pick % 3) switch
            {
                0 => l.Desc + (ulong)(pick / 3 % l.QueueSize) * PackedDesc.Size + PackedDesc.FlagsOffset,
                1 => l.DriverArea + (ulong)(pick / 3 % 2) * 2,
                _ => l.Desc + (ulong)(pick / 3 % l.QueueSize) * PackedDesc.Size + 12,   // id
            };
        return (pick % 4) switch
        {
            0 => l.AvailIdxAddr,
            1 => l.AvailRingAddr(pick / 4 % l.QueueSize),
            2 => l.UsedEventAddr,
            _ => l.AvailFlagsAddr,
        };
    }
}
