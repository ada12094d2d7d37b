using System.Buffers.Binary;
using VirtioSharp.Devices.Block;
using VirtioSharp.Host;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;

namespace VirtioSharp.Fuzz.Targets;

/// <summary>
/// virtio-blk request parsing: the fuzzer describes requests (type, sector, how header, data and status are split
/// over descriptors, data contents, discard segments), the harness lays them out as a driver would on a split ring,
/// and the real BlockDevice serves them through the device host. Raw pokes can corrupt anything in between.
/// Oracle (while nothing was poked): the disk changes exactly as the status byte says it may: an OK write, discard or
/// write-zeroes changes its range, anything else leaves the disk as it was; used lengths stay within the chain.
/// </summary>
public static class BlkRequestTarget
{
    public const int MaxOps = 64;
    private const ushort QueueSize = 16;
    private const ulong DiskBytes = 64 * 1024, Desc = 0x0000, Avail = 0x1000, Used = 0x2000;
    private static readonly uint[] Types = [BlkRequestType.In, BlkRequestType.Out, BlkRequestType.Flush, BlkRequestType.GetId, BlkRequestType.Discard, BlkRequestType.WriteZeroes];

    /// <summary>Op codes, the first byte of each op modulo the count.</summary>
    public enum Op : byte { Request, Kick, Poke }

    /// <summary>Flag bits of the first input byte: features the driver accepts, and the disk.</summary>
    [Flags]
    public enum Config : byte { EventIdx = 1, InOrder = 2, ReadOnly = 4, NoDiscard = 8, NoWriteZeroes = 16 }

    private sealed class Rig(bool readOnly)
    {
        public readonly MemoryBackend Disk = new(DiskBytes, readOnly);
        public readonly byte[] Shadow = new byte[DiskBytes];
        public readonly FuzzHostTransport<DeviceMemory<IdentityTranslate, RamPort>> Transport = new();
        public BlockDevice<DeviceMemory<IdentityTranslate, RamPort>>? Device;
        public VirtioDeviceHost<DeviceMemory<IdentityTranslate, RamPort>>? Host;
    }

    private static readonly Rig[] Rigs = [Build(false), Build(true)];
    private static readonly byte[] Pattern = Enumerable.Range(0, (int)DiskBytes).Select(i => (byte)(i * 7 + (i >> 9))).ToArray();

    private static Rig Build(bool readOnly)
    {
        var rig = new Rig(readOnly);
        rig.Device = new BlockDevice<DeviceMemory<IdentityTranslate, RamPort>>(rig.Disk, new BlockDeviceOptions { OfferInOrder = true, QueueSize = QueueSize, MaxDiscardSeg = 4, MaxWriteZeroesSeg = 4, MaxDiscardSectors = 64, MaxWriteZeroesSectors = 64 });
        rig.Host = new VirtioDeviceHost<DeviceMemory<IdentityTranslate, RamPort>>(rig.Device, rig.Transport);
        return rig;
    }

    private readonly record struct Pending(ushort Head, uint Type, ulong Sector, ulong StatusGpa, byte[] Out, ulong DataIn);

    public static void Run(ReadOnlySpan<byte> input)
    {
        var gm = FuzzGuestMemory.Shared;
        gm.Clear();
        var c = new ByteCursor(input);
        var cfg = (Config)c.U8();
        var rig = Rigs[cfg.HasFlag(Config.ReadOnly) ? 1 : 0];
        var host = rig.Host!;
        // A fresh disk per input: a counter pattern, so reads return something to compare.
        Pattern.CopyTo(rig.Shadow, 0);
        Pattern.CopyTo(rig.Disk.Data);
        ulong features = VirtioFeature.Bit(VirtioFeature.Version1) | VirtioFeature.Bit(VirtioFeature.IndirectDesc) | VirtioFeature.Bit(BlkFeature.Flush);
        if (cfg.HasFlag(Config.EventIdx)) features |= VirtioFeature.Bit(VirtioFeature.EventIdx);
        if (cfg.HasFlag(Config.InOrder)) features |= VirtioFeature.Bit(VirtioFeature.InOrder);
        if (!cfg.HasFlag(Config.NoDiscard)) features |= VirtioFeature.Bit(BlkFeature.Discard);
        if (!cfg.HasFlag(Config.NoWriteZeroes)) features |= VirtioFeature.Bit(BlkFeature.WriteZeroes);
        var opts = QueueOptions.FromFeatures(features);
        var layout = new SplitRingLayout(QueueSize, Desc, Avail, Used, opts.EventIdx, RingEndian.Little);
        DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>>? queue = null;
        rig.Transport.NextQueue = () => queue = new(gm.DeviceView, layout, opts);
        Invariant.That(host.NegotiateFeatures(features, out var why), $"block device refused offered features: {why}");
        Invariant.That(host.EnsureActivated() && queue is not null, "activation failed");

        var pending = new Dictionary<ushort, Pending>();
        ulong heap = 0x3000;
        ushort nextDesc = 0, availIdx = 0, lastUsed = 0;
        bool poked = false;
        try
        {
            for (int n = 0; n < MaxOps && c.More; n++)
            {
                switch ((Op)(c.U8() % 3))
                {
                    case Op.Request:
                        if (Lay(ref c, gm, ref heap, ref nextDesc, out var p))
                        {
                            pending[p.Head] = p;
                            gm.PokeU16(Avail + 4 + 2UL * (ulong)(availIdx % QueueSize), p.Head);
                            gm.PokeU16(Avail + 2, ++availIdx);
                        }
                        break;
                    case Op.Kick:
                        host.ServiceQueue(0, kicked: true);
                        if (!poked) Settle(gm, rig, queue!, pending, ref lastUsed, opts.InOrder);
                        break;
                    case Op.Poke:
                        poked = true;
                        gm.Poke(c.U16() % FuzzGuestMemory.Span, c.Bytes(c.U8() % 32));
                        break;
                }
            }
            host.ServiceQueue(0, kicked: true);
            if (!poked) Settle(gm, rig, queue!, pending, ref lastUsed, opts.InOrder);
        }
        finally
        {
            host.Reset();
        }
    }

    /// <summary>Writes one request's buffers and descriptors; false when the input ran out of ring or buffer space.</summary>
    private static bool Lay(ref ByteCursor c, FuzzGuestMemory gm, ref ulong heap, ref ushort nextDesc, out Pending p)
    {
        p = default;
        byte t = c.U8();
        uint type = (t & 0x80) != 0 ? c.U32() : Types[t % Types.Length];
        byte s = c.U8();
        ulong sector = (s & 0x80) != 0 ? c.U64() : (ulong)(s & 0x7F) * 2;
        byte shape = c.U8();
        int dataSegs = shape & 3;
        bool splitHeader = (shape & 4) != 0, statusInData = (shape & 8) != 0, indirect = (shape & 16) != 0;
        uint statusLen = (shape & 32) != 0 ? 4u : 1u;
        bool dataOut = type is BlkRequestType.Out or BlkRequestType.Discard or BlkRequestType.WriteZeroes;
        var segs = new List<(ulong Gpa, uint Len, bool Write)>();
        var outData = new List<byte>();
        var header = new byte[BlkSpec.HeaderSize];
        BinaryPrimitives.WriteUInt32LittleEndian(header, type);
        BinaryPrimitives.WriteUInt64LittleEndian(header.AsSpan(8), sector);

        bool Alloc(ReadOnlySpan<byte> contents, uint len, bool write, ref ulong heapRef)
        {
            ulong at = SkipHole(heapRef, len);
            if (at + len > FuzzGuestMemory.Span) return false;
            gm.Poke(at, contents);
            segs.Add((at, len, write));
            heapRef = (at + len + 15) & ~15UL;
            return true;
        }

        if (splitHeader)
        {
            if (!Alloc(header.AsSpan(0, 8), 8, false, ref heap) || !Alloc(header.AsSpan(8), 8, false, ref heap)) return false;
        }
        else if (!Alloc(header, BlkSpec.HeaderSize, false, ref heap)) return false;
        ulong dataIn = 0;
        for (int i = 0; i < dataSegs; i++)
        {
            byte l = c.U8();
            uint len = (l & 0x80) != 0 ? (uint)(l & 0x7F) + 1 : (uint)((l & 7) + 1) * 512;
            if (dataOut)
            {
                byte[] data = new byte[len];
                if (type == BlkRequestType.Out) data.AsSpan().Fill(c.U8());
                else c.Bytes((int)len).CopyTo(data);
                outData.AddRange(data);
                if (!Alloc(data, len, false, ref heap)) return false;
            }
            else
            {
                if (!Alloc(ReadOnlySpan<byte>.Empty, len, true, ref heap)) return false;
                dataIn += len;
            }
        }
        ulong statusGpa;
        if (statusInData && !dataOut && segs[^1].Write)
        {
            // The status byte is the last byte of the last data buffer (one writable descriptor for both).
            statusGpa = segs[^1].Gpa + segs[^1].Len - 1;
            dataIn--;
        }
        else
        {
            if (!Alloc(ReadOnlySpan<byte>.Empty, statusLen, true, ref heap)) return false;
            statusGpa = segs[^1].Gpa + statusLen - 1;
            dataIn += statusLen - 1;
        }
        gm.Poke(statusGpa, [0xEE]);   // not a status value: the device must overwrite it

        int ringDescs = indirect ? 1 : segs.Count;
        if (nextDesc + ringDescs > QueueSize) return false;
        ushort head = nextDesc;
        if (indirect)
        {
            ulong bytes = (ulong)segs.Count * VirtqDesc.Size;
            ulong table = SkipHole((heap + 15) & ~15UL, bytes);
            if (table + bytes > FuzzGuestMemory.Span) return false;
            for (int i = 0; i < segs.Count; i++) WriteDesc(gm, table + (ulong)i * VirtqDesc.Size, segs[i], i + 1 < segs.Count, (ushort)(i + 1));
            heap = table + bytes;
            gm.Poke(Desc + head * 16UL, DescBytes(table, (uint)bytes, (ushort)DescFlags.Indirect, 0));
        }
        else
            for (int i = 0; i < segs.Count; i++) WriteDesc(gm, Desc + (ulong)(head + i) * VirtqDesc.Size, segs[i], i + 1 < segs.Count, (ushort)(head + i + 1));
        nextDesc += (ushort)ringDescs;
        p = new Pending(head, type, sector, statusGpa, [.. outData], dataIn);
        return true;
    }

    // Buffers go in the low region until it is full, then in the high one; never across or into the hole.
    private static ulong SkipHole(ulong at, ulong len) =>
        at + len > FuzzGuestMemory.LowSize && at < FuzzGuestMemory.HighGpa ? FuzzGuestMemory.HighGpa : at;

    private static void WriteDesc(FuzzGuestMemory gm, ulong at, (ulong Gpa, uint Len, bool Write) s, bool next, ushort nextIdx) =>
        gm.Poke(at, DescBytes(s.Gpa, s.Len, (ushort)((s.Write ? DescFlags.Write : 0) | (next ? DescFlags.Next : 0)), next ? nextIdx : (ushort)0));

    private static byte[] DescBytes(ulong addr, uint len, ushort flags, ushort next) =>
        new InputBuilder().U64(addr).U32(len).U16(flags).U16(next).ToArray();

    /// <summary>Reads the used ring the device wrote and checks the disk against what each status allows.</summary>
    private static void Settle(FuzzGuestMemory gm, Rig rig, DeviceQueue<DeviceMemory<IdentityTranslate, RamPort>> q,
        Dictionary<ushort, Pending> pending, ref ushort lastUsed, bool inOrder)
    {
        var mem = gm.Memory;
        mem.LoadU16(Used + 2, out ushort usedIdx);
        Span<byte> e = stackalloc byte[8];
        var done = new List<Pending>();
        while (lastUsed != usedIdx)
        {
            mem.Read(Used + 4 + 8UL * (ulong)(lastUsed % QueueSize), e);
            ushort id = (ushort)BinaryPrimitives.ReadUInt32LittleEndian(e);
            Invariant.That(pending.ContainsKey(id), $"used element {lastUsed} names head {id}, which is not outstanding");
            // IN_ORDER: one element at the batch's first slot names its last head; every older request is in it.
            var batch = inOrder ? pending.Values.Where(x => x.Head <= id).OrderBy(x => x.Head).ToList() : [pending[id]];
            foreach (var b in batch) { done.Add(b); pending.Remove(b.Head); }
            lastUsed += (ushort)batch.Count;
        }
        // A broken queue may have served requests it can no longer report; a well-formed stream never breaks it.
        Invariant.That(!q.IsBroken, $"a well-formed request stream broke the queue: {q.ErrorDetail}");
        foreach (var p in done) Expect(gm, rig, p);
        Invariant.That(rig.Disk.Data.SequenceEqual(rig.Shadow), "the disk changed in a way no completed request allows");
    }

    private static bool InDisk(ulong sector, ulong bytes) => sector <= DiskBytes / 512 && bytes <= DiskBytes - sector * 512;

    private static void Expect(FuzzGuestMemory gm, Rig rig, Pending p)
    {
        var sb = new byte[1];
        gm.Memory.Read(p.StatusGpa, sb);
        byte status = sb[0];
        Invariant.That(status is (byte)BlkStatus.Ok or (byte)BlkStatus.IoErr or (byte)BlkStatus.Unsupp, $"request type {p.Type} completed with status byte 0x{status:x2}");
        if (status != (byte)BlkStatus.Ok) return;
        Invariant.That(!rig.Disk.ReadOnly || p.Type is not (BlkRequestType.Out or BlkRequestType.Discard or BlkRequestType.WriteZeroes), $"type {p.Type} succeeded on a read-only disk");
        switch (p.Type)
        {
            case BlkRequestType.Out:
                Invariant.That(p.Out.Length % 512 == 0 && InDisk(p.Sector, (ulong)p.Out.Length), $"write of {p.Out.Length} bytes at sector {p.Sector} reported OK");
                p.Out.CopyTo(rig.Shadow.AsSpan((int)(p.Sector * 512)));
                break;
            case BlkRequestType.Discard:
            case BlkRequestType.WriteZeroes:
                for (int i = 0; i + 16 <= p.Out.Length; i += 16)
                {
                    ulong sector = BinaryPrimitives.ReadUInt64LittleEndian(p.Out.AsSpan(i));
                    uint count = BinaryPrimitives.ReadUInt32LittleEndian(p.Out.AsSpan(i + 8));
                    Invariant.That(InDisk(sector, (ulong)count * 512), $"range {sector}+{count} reported OK");
                    rig.Shadow.AsSpan((int)(sector * 512), (int)(count * 512)).Clear();
                }
                break;
            case BlkRequestType.In:
                Invariant.That(p.DataIn % 512 == 0 && InDisk(p.Sector, p.DataIn), $"read of {p.DataIn} bytes at sector {p.Sector} reported OK");
                break;
        }
    }
}
