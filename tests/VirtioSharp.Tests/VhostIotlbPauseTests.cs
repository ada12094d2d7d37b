using System.Buffers.Binary;
using VirtioSharp.Devices.Block;
using VirtioSharp.Interop;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// A ring paused while its worker waits for an IOTLB miss (QEMU turns VHOST_F_LOG_ALL on when a migration starts, with
/// the rings running): the wait ends at once, but the chain being walked is not the driver's fault and must not break
/// the queue. It stays available and the restarted ring takes it once the front-end answers; a real guest under a vIOMMU
/// used to get DEVICE_NEEDS_RESET exactly when its migration began.
/// </summary>
public class VhostIotlbPauseTests
{
    [Fact]
    public void LogAllTurnedOnDuringAnIotlbMissLeavesTheChainForTheRestartedRing()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions { IotlbMissTimeout = TimeSpan.FromSeconds(30) });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        ulong features = VirtioFeature.Bit(VirtioFeature.Version1) | VirtioFeature.Bit(VirtioFeature.AccessPlatform);
        ConfigureRing(c, mem, features: VirtioFeature.Bit(VirtioFeature.AccessPlatform), protocol: 1UL << VhostProtocolFeature.BackendReq);
        var (ours, theirs) = SafeFd.SocketPair();
        using var oursOwner = ours;
        using var channel = new RawClient(new System.Net.Sockets.Socket(new System.Net.Sockets.SafeSocketHandle(ours.DangerousGetHandle(), ownsHandle: false)));
        c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [theirs]);
        theirs.Dispose();
        // IOVA = the front-end's user address; only the ring's three pages are mapped, so walking the request misses.
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr, 0x3000, UserAddr, IotlbMsgType.PermReadWrite, IotlbMsgType.Update));
        unsafe
        {
            var ram = new Span<byte>((void*)map.Address, (int)MemBytes);
            WriteUserAddrReadRequest(ram);
        }
        using var kick = EventFd.Create();
        using var call = EventFd.Create(nonBlocking: true);
        c.Send(VhostRequest.SetVringCall, RawClient.U64(0), [call.Handle]);
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);

        var miss = channel.Receive();
        Assert.NotNull(miss);
        Assert.Equal(IotlbMsgType.Miss, miss!.Value.Body[25]);
        Assert.InRange(BinaryPrimitives.ReadUInt64LittleEndian(miss.Value.Body), UserAddr + 0x3000, UserAddr + 0x5FFF);

        // The migration starts: LOG_ALL on while the worker waits. The pause must end the wait, not the queue.
        c.Send(VhostRequest.SetFeatures, features | 1UL << VhostHeader.LogAllBit);
        Assert.True(WaitForLog(rig, "dirty logging on"), "LOG_ALL was not applied");
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        Assert.DoesNotContain(rig.Log.Lines, l => l.Contains("needs a reset", StringComparison.OrdinalIgnoreCase));

        // The front-end answers; the restarted ring takes the same chain again and completes it.
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr, MemBytes, UserAddr, IotlbMsgType.PermReadWrite, IotlbMsgType.Update));
        kick.Signal();
        WaitForUsed(map);
        unsafe
        {
            var ram = new Span<byte>((void*)map.Address, (int)MemBytes);
            Assert.Equal(1, BinaryPrimitives.ReadUInt16LittleEndian(ram[0x2002..]));   // used idx: exactly once
            Assert.Equal(0u, BinaryPrimitives.ReadUInt32LittleEndian(ram[0x2004..]));   // used[0].id = head 0
            Assert.Equal((byte)BlkStatus.Ok, ram[0x5000]);
        }
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
    }

    /// <summary>
    /// The same pause while the miss cannot even be sent: the front-end is not reading its back-end channel (QEMU's main
    /// loop waits for the reply to the very message that pauses the ring). The send is given up, the channel stays
    /// open (nothing of the message went out), and once the front-end reads again the restarted ring asks again.
    /// </summary>
    [Fact]
    public void APauseGivesUpAMissThatCannotBeSentAndKeepsTheChannel()
    {
        using var rig = new VhostRig(options: new VhostUserBackendOptions
        {
            IotlbMissTimeout = TimeSpan.FromSeconds(30), BackendChannelTimeout = TimeSpan.FromSeconds(30),
        });
        using var c = rig.Connect();
        using var mem = MemFd.Create("mem", MemBytes);
        using var map = MappedRegion.Map(mem, MemBytes, 0);
        ulong features = VirtioFeature.Bit(VirtioFeature.Version1) | VirtioFeature.Bit(VirtioFeature.AccessPlatform);
        ConfigureRing(c, mem, features: VirtioFeature.Bit(VirtioFeature.AccessPlatform), protocol: 1UL << VhostProtocolFeature.BackendReq);
        var (ours, theirs) = SafeFd.SocketPair();
        using var oursOwner = ours;
        int filled = 0;
        using (var fill = new FdSocket(theirs))
        {
            var chunk = new byte[4096];
            while (fill.TrySend(chunk, default, 0, out _)) filled += chunk.Length;
            c.Send(VhostRequest.SetBackendReqFd, ReadOnlySpan<byte>.Empty, [theirs]);
        }
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr, 0x3000, UserAddr, IotlbMsgType.PermReadWrite, IotlbMsgType.Update));
        unsafe { WriteUserAddrReadRequest(new Span<byte>((void*)map.Address, (int)MemBytes)); }
        using var kick = EventFd.Create();
        using var call = EventFd.Create(nonBlocking: true);
        c.Send(VhostRequest.SetVringCall, RawClient.U64(0), [call.Handle]);
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        Thread.Sleep(200);   // the worker is now stuck sending its miss into the full channel

        c.Send(VhostRequest.SetFeatures, features | 1UL << VhostHeader.LogAllBit);
        Assert.True(WaitForLog(rig, "dirty logging on"), "LOG_ALL was not applied while a miss waited to be sent");
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
        Assert.DoesNotContain(rig.Log.Lines, l => l.Contains("back-end channel closed", StringComparison.Ordinal));

        // The front-end reads again: first what filled the channel, then the restarted ring's miss, which it answers.
        using var raw = new System.Net.Sockets.Socket(new System.Net.Sockets.SafeSocketHandle(ours.DangerousGetHandle(), ownsHandle: false));
        raw.ReceiveTimeout = 5000;
        var sink = new byte[65536];
        for (int got = 0; got < filled;) got += raw.Receive(sink, 0, Math.Min(sink.Length, filled - got), System.Net.Sockets.SocketFlags.None);
        var channel = new RawClient(raw);
        var miss = channel.Receive();
        Assert.NotNull(miss);
        Assert.Equal(IotlbMsgType.Miss, miss!.Value.Body[25]);
        c.Send(VhostRequest.IotlbMsg, Iotlb(UserAddr, MemBytes, UserAddr, IotlbMsgType.PermReadWrite, IotlbMsgType.Update));
        WaitForUsed(map);
        unsafe
        {
            var ram = new Span<byte>((void*)map.Address, (int)MemBytes);
            Assert.Equal((byte)BlkStatus.Ok, ram[0x5000]);
        }
        Assert.Equal(0UL, c.AskU64(VhostRequest.GetStatus) & (ulong)DeviceStatus.DeviceNeedsReset);
    }

    /// <summary>Waits (10 s at most) until the device published a used entry (used idx at +0x2002 no longer 0).</summary>
    private static unsafe void WaitForUsed(MappedRegion map)
    {
        var end = Environment.TickCount64 + 10_000;
        while (BinaryPrimitives.ReadUInt16LittleEndian(new ReadOnlySpan<byte>((void*)(map.Address + 0x2002), 2)) == 0)
        {
            Assert.True(Environment.TickCount64 < end, "the request was never completed after the pause");
            Thread.Sleep(5);
        }
    }
}
