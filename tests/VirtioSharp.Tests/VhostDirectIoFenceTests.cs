using System.Buffers.Binary;
using System.Runtime.InteropServices;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// Zero-copy storage I/O holds host addresses translated through the IOTLB: an IOTLB INVALIDATE must not be
/// confirmed (REPLY_ACK) while a request translated before it can still write into the old mapping.
/// </summary>
public class VhostDirectIoFenceTests
{
    [Fact]
    public void AnIotlbInvalidationIsConfirmedOnlyAfterTheStorageIoTranslatedBeforeIt()
    {
        using var storage = new ManualStorage(1 << 20);
        storage.Disk.AsSpan(0, 4096).Fill(0xC3);
        using var rig = new VhostRig(storage: storage);
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        ConfigureRing(c, mem, features: VirtioFeature.Bit(VirtioFeature.AccessPlatform), protocol: 1UL << VhostProtocolFeature.ReplyAck);
        // IOVA = the front-end's user address, for the whole region.
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr, MemBytes, UserAddr, IotlbMsgType.PermReadWrite, IotlbMsgType.Update),
            flags: VhostHeader.Version | VhostHeader.NeedReplyFlag);
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(c.Receive()!.Value.Body));
        // One read request: header at +0x3000, 4 KiB of data at +0x4000, status at +0x5000 (ring at +0 / +0x1000 / +0x2000).
        unsafe
        {
            var ram = new Span<byte>((void*)map.Address, (int)MemBytes);
            WriteUserAddrReadRequest(ram);
        }
        using var kick = EventFd.Create();
        using var call = EventFd.Create(nonBlocking: true);
        c.Send(VhostRequest.SetVringCall, RawClient.U64(0), [call.Handle]);
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        while (storage.Held < 1) { Assert.True(sw.Elapsed.TotalSeconds < 10, "the read never reached the storage"); Thread.Sleep(1); }

        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr, MemBytes, 0, 0, IotlbMsgType.Invalidate),
            flags: VhostHeader.Version | VhostHeader.NeedReplyFlag);
        bool early;
        try { early = c.AnswersWithin(TimeSpan.FromMilliseconds(400)); }
        finally { storage.Release(); }   // whatever happened, the read may not outlive the memory
        Assert.False(early, "the invalidation was confirmed while the read could still write through the old mapping");
        Assert.True(c.AnswersWithin(TimeSpan.FromSeconds(10)), "the invalidation was never confirmed after the read completed");
        Assert.Equal(0UL, BinaryPrimitives.ReadUInt64LittleEndian(c.Receive()!.Value.Body));
        unsafe
        {
            var ram = new Span<byte>((void*)map.Address, (int)MemBytes);
            Assert.All(ram.Slice(0x4000, 4096).ToArray(), b => Assert.Equal(0xC3, b));
        }
    }
}
