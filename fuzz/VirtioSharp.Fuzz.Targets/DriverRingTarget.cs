using VirtioSharp.Dma;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// The driver side of a split or packed ring facing a device the fuzzer plays: it adds chains, while the "device"
/// writes used elements, used idx, packed used descriptors, event areas or any ring byte, or serves the ring honestly
/// through a real device queue; the driver takes used buffers, kicks, toggles callbacks and detaches. Input: flags,
/// size byte, then ops (<see cref="Op"/>). Oracle: GetUsed only returns outstanding tokens once each with a length
/// within their writable bytes; counts agree; detaching and disposing leave no DMA mapping or guest page behind.
/// </summary>
public static class DriverRingTarget
{
    public const int MaxOps = 256;
    private const ulong RamSize = 0x30000, AllocatorSize = 0x20000, DataGpa = AllocatorSize, DataSize = RamSize - AllocatorSize;

    /// <summary>Op codes, the first byte of each op modulo the count.</summary>
    public enum Op : byte { Add, GetUsed, UsedElem, UsedIdx, PackedUsed, DeviceEvent, PokeRing, DeviceServes, Kick, Callbacks, Detach }

    /// <summary>Flag bits of the first input byte.</summary>
    [Flags]
    public enum Config : byte { Packed = 1, EventIdx = 2, Indirect = 4, InOrder = 8 }

    private static readonly PlainDmaPlatform Platform = new(GuestMemory.Create(RamSize), new GuestAllocator(0, AllocatorSize));

    public static void Run(ReadOnlySpan<byte> input)
    {
        var c = new ByteCursor(input);
        var cfg = (Config)c.U8();
        bool packed = cfg.HasFlag(Config.Packed);
        ushort size = RingShape.Size(packed, c.U8());
        var opts = new QueueOptions
        {
            Packed = packed,
            EventIdx = cfg.HasFlag(Config.EventIdx),
            IndirectDesc = cfg.HasFlag(Config.Indirect),
            InOrder = cfg.HasFlag(Config.InOrder),
            MaxIndirect = 4,
        };
        var dma = new DirectDmaOps(Platform);
        int pagesBefore = Platform.Allocator.UsedPages;
        var driver = new DriverQueue(dma, Platform.Ram, size, opts);
        var device = new DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>>(new(default, new RamPort(Platform.Ram)), driver.DeviceLayout, opts);
        var outstanding = new Dictionary<object, uint>();   // token → writable bytes
        var deviceHeld = new List<DescriptorChain>();
        try
        {
            for (int n = 0; n < MaxOps && c.More; n++)
            {
                Step(ref c, driver, device, outstanding, deviceHeld, packed);
                Invariant.That(driver.Outstanding == outstanding.Count, $"driver counts {driver.Outstanding} outstanding, {outstanding.Count} were added and not returned");
                Invariant.That(driver.FreeDescriptors is >= 0 && driver.FreeDescriptors <= size, $"{driver.FreeDescriptors} free descriptors on a {size}-entry ring");
                Invariant.That(dma.Stats.Outstanding >= 0, "more unmaps than maps");
            }
            var detached = driver.DetachUnused();
            Invariant.That(detached.Count == outstanding.Count && detached.All(outstanding.ContainsKey), $"DetachUnused returned {detached.Count} tokens for {outstanding.Count} outstanding");
            Invariant.That(dma.Stats.Outstanding == 0, $"{dma.Stats.Outstanding} DMA mappings left after DetachUnused");
        }
        finally
        {
            driver.Dispose();
        }
        Invariant.That(Platform.Allocator.UsedPages == pagesBefore, $"{Platform.Allocator.UsedPages - pagesBefore} guest pages leaked by a disposed queue");
    }

    private static void Step(ref ByteCursor c, DriverQueue driver, DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>> device,
        Dictionary<object, uint> outstanding, List<DescriptorChain> deviceHeld, bool packed)
    {
        var ram = Platform.Ram;
        var layout = driver.DeviceLayout;
        switch ((Op)(c.U8() % 11))
        {
            case Op.Add:
            {
                byte shape = c.U8();
                int readable = shape & 3, writable = (shape >> 2) & 3;
                if (readable + writable == 0) writable = 1;
                var r = new BufferSegment[readable];
                var w = new BufferSegment[writable];
                for (int i = 0; i < readable; i++) r[i] = Segment(ref c);
                uint wbytes = 0;
                for (int i = 0; i < writable; i++) { w[i] = Segment(ref c); wbytes += w[i].Length; }
                var token = new object();
                var st = driver.Add(r, w, token, out var dmaSt);
                Invariant.That(st is QueueStatus.Ok or QueueStatus.NoSpace or QueueStatus.Broken, $"Add returned {st} ({dmaSt}) for buffers inside RAM");
                if (st == QueueStatus.Ok) outstanding.Add(token, wbytes);
                break;
            }
            case Op.GetUsed:
            {
                bool wasBroken = driver.IsBroken;
                var st = driver.GetUsed(out var token, out uint len);
                if (wasBroken) Invariant.That(st == QueueStatus.Broken, $"a broken driver queue returned {st}");
                if (st != QueueStatus.Ok) { Invariant.That(token is null, $"{st} GetUsed returned a token"); break; }
                Invariant.That(token is not null && outstanding.TryGetValue(token, out uint wb), "GetUsed returned a token that is not outstanding");
                Invariant.That(len <= outstanding[token!], $"used length {len} exceeds the {outstanding[token!]} writable bytes");
                outstanding.Remove(token!);
                break;
            }
            case Op.UsedElem:
            {
                byte slot = c.U8();
                uint id = c.U16(), len = c.U32();
                if (packed) break;
                Span<byte> b = stackalloc byte[8];
                BitConverter.TryWriteBytes(b, id);
                BitConverter.TryWriteBytes(b[4..], len);
                ram.Write(layout.UsedRingAddr(slot % layout.QueueSize), b);
                break;
            }
            case Op.UsedIdx:
            {
                ushort v = c.U16();
                ram.StoreU16(packed ? layout.DeviceArea : layout.UsedIdxAddr, v);
                break;
            }
            case Op.PackedUsed:
            {
                byte slot = c.U8();
                ushort id = c.U16();
                uint len = c.U32();
                byte wrap = c.U8();
                if (!packed) break;
                Span<byte> b = stackalloc byte[8];
                BitConverter.TryWriteBytes(b, len);
                BitConverter.TryWriteBytes(b[4..], id);
                BitConverter.TryWriteBytes(b[6..], (wrap & 1) != 0 ? PackedRing.UsedBits(true) : (wrap & 2) != 0 ? PackedRing.UsedBits(false) : (ushort)(wrap << 8));
                ram.Write(layout.Desc + (ulong)(slot % layout.QueueSize) * PackedDesc.Size + PackedDesc.LenOffset, b);
                break;
            }
            case Op.DeviceEvent:
            {
                ushort offWrap = c.U16(), flags = c.U16();
                ulong at = packed ? layout.DeviceArea : layout.UsedFlagsAddr;
                ram.StoreU16(at, packed ? offWrap : flags);
                if (packed) ram.StoreU16(at + 2, flags);
                else ram.StoreU16(layout.AvailEventAddr, offWrap);
                break;
            }
            case Op.PokeRing:
            {
                ulong ringBytes = (layout.Used - layout.Desc) + (packed ? PackedRing.EventBytes : SplitRingLayout.UsedBytes(layout.QueueSize));
                ulong off = c.U16() % ringBytes;
                var bytes = c.Bytes(c.U8() % 16);
                ram.Write(layout.Desc + off, bytes[..(int)Math.Min((ulong)bytes.Length, ringBytes - off)]);
                break;
            }
            case Op.DeviceServes:
            {
                // An honest device: pop what it can, then use the held chains (oldest first under IN_ORDER).
                byte k = c.U8();
                while (device.Pop(out var chain) == QueueStatus.Ok) deviceHeld.Add(chain!);
                int use = Math.Min(deviceHeld.Count, k % 4 + 1);
                for (int i = 0; i < use && !device.IsBroken; i++)
                {
                    var ch = deviceHeld[0];
                    deviceHeld.RemoveAt(0);
                    device.AddUsed(ch, (uint)Math.Min(ch.WritableBytes, k));
                }
                break;
            }
            case Op.Kick: driver.KickPrepare(); _ = driver.HasUsed; break;
            case Op.Callbacks:
                if (c.U8() % 2 == 0) driver.DisableCallbacks(); else driver.EnableCallbacks();
                break;
            case Op.Detach:
            {
                var tokens = driver.DetachUnused();
                Invariant.That(tokens.Count == outstanding.Count && tokens.All(outstanding.ContainsKey), $"DetachUnused returned {tokens.Count} tokens for {outstanding.Count} outstanding");
                outstanding.Clear();
                // The device side is reset with the driver (a device reset precedes DetachUnused).
                device.Reset();
                deviceHeld.Clear();
                break;
            }
        }
    }

    private static BufferSegment Segment(ref ByteCursor c)
    {
        ulong off = c.U16() % DataSize;
        uint len = (uint)Math.Min(c.U8() + 1UL, DataSize - off);
        return new BufferSegment(DataGpa + off, len);
    }
}
