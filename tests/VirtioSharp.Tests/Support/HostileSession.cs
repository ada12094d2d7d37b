using VirtioSharp.Devices.Block;
using System.Buffers.Binary;
using VirtioSharp.Spec;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Tests.Support;

/// <summary>The message sequences hostile-front-end tests share: a memory table and a split ring 0 configured up to its kick fd.</summary>
internal static class HostileSession
{
    public const ulong UserAddr = 0x1000_0000;
    public const ulong MemBytes = 1 << 20;

    public static byte[] MemTable(params VhostMemoryRegion[] regions)
    {
        var b = new byte[8 + regions.Length * VhostMemoryRegion.Length];
        BinaryPrimitives.WriteUInt32LittleEndian(b, (uint)regions.Length);
        for (int i = 0; i < regions.Length; i++) regions[i].Write(b.AsSpan(8 + i * VhostMemoryRegion.Length));
        return b;
    }

    /// <summary>ADD_MEM_REG / REM_MEM_REG payload: 8 bytes of padding, then the region.</summary>
    public static byte[] OneRegion(VhostMemoryRegion r)
    {
        var b = new byte[8 + VhostMemoryRegion.Length];
        r.Write(b.AsSpan(8));
        return b;
    }

    /// <summary>
    /// Protocol features (STATUS, plus <paramref name="protocol"/>), features (VERSION_1, plus
    /// <paramref name="features"/>), one region of <see cref="MemBytes"/> at gpa 0 / <see cref="UserAddr"/>, ring 0 of 16
    /// entries at <paramref name="ringAddr"/> (desc, avail +0x1000, used +0x2000).
    /// </summary>
    public static void ConfigureRing(RawClient c, SafeFd mem, ulong features = 0, ulong protocol = 0, ulong ringAddr = UserAddr)
    {
        c.Send(VhostRequest.SetProtocolFeatures, (1UL << VhostProtocolFeature.Status) | protocol);
        c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1) | features);
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, MemBytes, UserAddr, 0)), [mem]);
        ConfigureRing0(c, ringAddr);
    }

    /// <summary>Ring 0: 16 entries at <paramref name="ringAddr"/> (desc, avail +0x1000, used +0x2000).</summary>
    public static void ConfigureRing0(RawClient c, ulong ringAddr = UserAddr)
    {
        c.Send(VhostRequest.SetVringNum, RawClient.State(0, 16));
        var addr = new byte[40];
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), ringAddr);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(16), ringAddr + 0x2000);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(24), ringAddr + 0x1000);
        c.Send(VhostRequest.SetVringAddr, addr);
    }

    /// <summary>Waits up to <paramref name="ms"/> for a log line containing <paramref name="fragment"/>.</summary>
    public static bool WaitForLog(VhostRig rig, string fragment, int ms = 5000)
    {
        var end = Environment.TickCount64 + ms;
        while (Environment.TickCount64 < end)
        {
            if (rig.Log.Lines.Any(l => l.Contains(fragment, StringComparison.OrdinalIgnoreCase))) return true;
            Thread.Sleep(10);
        }
        return false;
    }

    /// <summary>A VHOST_USER_IOTLB_MSG payload (struct vhost_iotlb_msg).</summary>
    public static byte[] Iotlb(ulong iova, ulong size, ulong uaddr, byte perm, byte type) =>
        new IotlbRequest(iova, size, uaddr, perm, type).ToArray();

    /// <summary>
    /// One 4 KiB virtio-blk IN request for sector 0 with IOVA = the front-end's user address: ring at +0 / +0x1000 /
    /// +0x2000 of <paramref name="ram"/>, header at +0x3000, data at +0x4000, status at +0x5000 (set to 0xFF).
    /// </summary>
    public static void WriteUserAddrReadRequest(Span<byte> ram)
    {
        static void Desc(Span<byte> ram, int i, ulong addr, uint len, ushort flags, ushort next)
        {
            var d = ram.Slice(i * 16, 16);
            BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
            BinaryPrimitives.WriteUInt32LittleEndian(d[8..], len);
            BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
            BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
        }
        Desc(ram, 0, UserAddr + 0x3000, 16, 1, 1);        // NEXT
        Desc(ram, 1, UserAddr + 0x4000, 4096, 3, 2);      // NEXT | WRITE
        Desc(ram, 2, UserAddr + 0x5000, 1, 2, 0);         // WRITE
        new BlkHeader(BlkRequestType.In, 0).Write(ram.Slice(0x3000, 16));
        ram[0x5000] = 0xFF;
        BinaryPrimitives.WriteUInt16LittleEndian(ram[0x1004..], 0);   // avail ring[0] = head 0
        BinaryPrimitives.WriteUInt16LittleEndian(ram[0x1002..], 1);   // avail idx
    }

    /// <summary>One virtio-blk IN request for sector 0 in a split ring at gpa 0 (desc), 0x1000 (avail), 0x2000 (used).</summary>
    public static void WriteReadRequest(Span<byte> m)
    {
        static void Desc(Span<byte> m, int i, ulong addr, uint len, ushort flags, ushort next)
        {
            var d = m[(i * 16)..];
            BinaryPrimitives.WriteUInt64LittleEndian(d, addr);
            BinaryPrimitives.WriteUInt32LittleEndian(d[8..], len);
            BinaryPrimitives.WriteUInt16LittleEndian(d[12..], flags);
            BinaryPrimitives.WriteUInt16LittleEndian(d[14..], next);
        }
        const ushort next = 1, write = 2;
        Desc(m, 0, 0x4000, 16, next, 1);
        Desc(m, 1, 0x5000, 512, next | write, 2);
        Desc(m, 2, 0x6000, 1, write, 0);
        m.Slice(0x4000, 16).Clear();   // type IN, sector 0
        m[0x6000] = 0xFF;
        BinaryPrimitives.WriteUInt16LittleEndian(m[0x1004..], 0);   // ring[0] = head 0
        BinaryPrimitives.WriteUInt16LittleEndian(m[0x1002..], 1);   // avail idx
    }
}
