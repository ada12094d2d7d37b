using System.Buffers.Binary;
using VirtioSharp.Interop;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// The inflight region is made for the device's largest queues (QEMU's queue-size), but a driver may set a smaller ring
/// (SeaBIOS uses 256 entries of a queue-size=1024 disk): a split ring of up to the region's size starts and is
/// tracked; a larger one is refused, and a region naming a head beyond the ring is refused, not trusted.
/// </summary>
public unsafe class VhostInflightSmallerRingTests
{
    private static ushort UsedIdx(Span<byte> m) => BinaryPrimitives.ReadUInt16LittleEndian(m[0x2002..]);

    private static bool WaitUntil(Func<bool> cond, int ms)
    {
        var end = Environment.TickCount64 + ms;
        while (!cond()) { if (Environment.TickCount64 > end) return false; Thread.Sleep(1); }
        return true;
    }

    /// <summary>Region for one queue of <paramref name="regionSize"/> entries, optionally with head <paramref name="inFlightHead"/> recorded in flight.</summary>
    private static (SafeFd Fd, byte[] Msg) Region(ushort regionSize, int inFlightHead = -1)
    {
        ulong size = VhostInflightState.QueueBytes(regionSize, packed: false);
        var fd = MemFd.Create("inflight", size);
        if (inFlightHead >= 0)
        {
            using var map = MappedRegion.Map(fd, size, 0);
            var r = new Span<byte>((void*)map.Address, (int)size);
            // Header: features u64, version u16, desc_num u16, last_batch_head u16, used_idx u16; then 16-byte entries.
            BinaryPrimitives.WriteUInt16LittleEndian(r[8..], 1);
            BinaryPrimitives.WriteUInt16LittleEndian(r[10..], regionSize);
            var e = r[(16 + 16 * inFlightHead)..];
            e[0] = 1;
            BinaryPrimitives.WriteUInt64LittleEndian(e[8..], 1);
        }
        var msg = new byte[InflightDescription.WireSize];
        new InflightDescription(size, 0, 1, regionSize).Write(msg);
        return (fd, msg);
    }

    [Theory]
    [InlineData(16, true)]     // the same size
    [InlineData(64, true)]     // a ring smaller than the region: accepted
    [InlineData(8, false)]     // a ring larger than the region: refused
    public void RingUpToTheRegionsSizeStarts(ushort regionSize, bool starts)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        var m = new Span<byte>((void*)map.Address, (int)MemBytes);
        WriteReadRequest(m);
        var (fd, msg) = Region(regionSize);
        using (fd)
        {
            c.Send(VhostRequest.SetProtocolFeatures, (1UL << VhostProtocolFeature.Status) | 1UL << VhostProtocolFeature.InflightShmfd);
            c.Send(VhostRequest.SetFeatures, Spec.VirtioFeature.Bit(Spec.VirtioFeature.Version1));
            c.Send(VhostRequest.SetInflightFd, msg, [fd]);
        }
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, MemBytes, UserAddr, 0)), [mem]);
        ConfigureRing0(c);   // 16 entries
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        kick.Signal();
        bool served = WaitUntil(() => UsedIdx(new Span<byte>((void*)map.Address, (int)MemBytes)) == 1, 3000);
        Assert.Equal(starts, served);
        if (!starts) Assert.True(WaitForLog(rig, "inflight region was made for queues of at most 8"));
    }

    [Fact]
    public void RegionNamingAHeadBeyondTheRingIsRefused()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        var (fd, msg) = Region(64, inFlightHead: 40);   // head 40 in flight: impossible for a 16-entry ring
        using (fd)
        {
            c.Send(VhostRequest.SetProtocolFeatures, (1UL << VhostProtocolFeature.Status) | 1UL << VhostProtocolFeature.InflightShmfd);
            c.Send(VhostRequest.SetFeatures, Spec.VirtioFeature.Bit(Spec.VirtioFeature.Version1));
            c.Send(VhostRequest.SetInflightFd, msg, [fd]);
        }
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, MemBytes, UserAddr, 0)), [mem]);
        ConfigureRing0(c);
        using var kick = EventFd.Create();
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        Assert.True(WaitForLog(rig, "names head 40 in flight, beyond the ring's 16 entries"));
    }
}
