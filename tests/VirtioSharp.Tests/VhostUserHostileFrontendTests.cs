using System.Buffers.Binary;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;
using static VirtioSharp.Tests.Support.HostileSession;

namespace VirtioSharp.Tests;

/// <summary>
/// A front-end that speaks the protocol badly. For each malformed input the back-end answers with an error or drops
/// the connection, logs a line naming what was wrong, keeps serving new connections, and never touches the disk.
/// </summary>
public class VhostUserHostileFrontendTests
{
    private static void AssertDroppedAndStillServing(VhostRig rig, RawClient c, string logFragment)
    {
        Assert.True(c.IsClosedByPeer(), "the back-end should have closed the connection");
        Assert.True(rig.WaitClosed(1));
        Assert.Contains(rig.Log.Lines, l => l.Contains(logFragment, StringComparison.OrdinalIgnoreCase));
        using var next = rig.Connect();
        ulong f = next.AskU64(VhostRequest.GetFeatures);
        Assert.True(VirtioFeature.Has(f, VirtioFeature.Version1), "a new connection is served normally");
        Assert.Equal(rig.DiskBefore, rig.Disk.Data.ToArray());
    }

    private static SafeFd MemFdOf(ulong size) => MemFd.Create("test", size);

    [Fact]
    public void TruncatedHeader()
    {
        using var rig = new VhostRig();
        var c = rig.Connect();
        c.SendRaw(new byte[] { 1, 0, 0, 0, 1, 0 });
        c.ShutdownWrite();
        AssertDroppedAndStillServing(rig, c, "mid-message");
        c.Dispose();
    }

    [Fact]
    public void TruncatedPayload()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetFeatures, new byte[4], size: 8);
        c.ShutdownWrite();
        AssertDroppedAndStillServing(rig, c, "SetFeatures");
    }

    [Fact]
    public void PayloadSizeOverTheMaximum()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetConfig, new byte[16], size: 1_000_000);
        AssertDroppedAndStillServing(rig, c, "exceeds the maximum");
    }

    [Fact]
    public void PayloadTooShortForTheMessage()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetVringAddr, new byte[12]);
        AssertDroppedAndStillServing(rig, c, "too short");
    }

    [Fact]
    public void WrongHeaderVersion()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.GetFeatures, ReadOnlySpan<byte>.Empty, flags: 2);
        AssertDroppedAndStillServing(rig, c, "header version");
    }

    [Fact]
    public void UnknownRequest()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send((VhostRequest)999, ReadOnlySpan<byte>.Empty);
        AssertDroppedAndStillServing(rig, c, "unsupported request");
    }

    [Fact]
    public void KickWithoutItsDescriptor()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetVringKick, 0UL);
        AssertDroppedAndStillServing(rig, c, "expected 1 file descriptor");
    }

    [Fact]
    public void KickWithTwoDescriptorsClosesBoth()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var a = MemFdOf(4096);
        using var b = MemFdOf(4096);
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [a, b]);
        AssertDroppedAndStillServing(rig, c, "got 2");
    }

    [Fact]
    public void MemTableWithFewerDescriptorsThanRegions()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var fd = MemFdOf(1 << 20);
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, 1 << 20, 0x1000_0000, 0), new VhostMemoryRegion(1 << 20, 1 << 20, 0x2000_0000, 0)), [fd]);
        AssertDroppedAndStillServing(rig, c, "expected 2 file descriptor");
    }

    [Fact]
    public void MemTableRegionThatOverflows()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var fd = MemFdOf(1 << 20);
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(ulong.MaxValue - 0xFFF, 0x2000, 0x1000_0000, 0)), [fd]);
        AssertDroppedAndStillServing(rig, c, "overflows 64 bits");
    }

    [Fact]
    public void MemTableRegionsThatOverlap()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var a = MemFdOf(1 << 20);
        using var b = MemFdOf(1 << 20);
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, 1 << 20, 0x1000_0000, 0), new VhostMemoryRegion(0x8_0000, 1 << 20, 0x2000_0000, 0)), [a, b]);
        AssertDroppedAndStillServing(rig, c, "overlap");
    }

    [Fact]
    public void MemTableWithMoreRegionsThanAllowed()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        var p = new byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(p, 100);
        c.Send(VhostRequest.SetMemTable, p);
        AssertDroppedAndStillServing(rig, c, "100 regions");
    }

    [Fact]
    public void MemTableRegionLargerThanItsFile()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var fd = MemFdOf(4096);
        // mmap of a region beyond the memfd's size succeeds but faults on touch; the back-end must not map past EOF.
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, 1UL << 30, 0x1000_0000, 0)), [fd]);
        AssertDroppedAndStillServing(rig, c, "mmap would fault");
    }

    [Theory]
    // uint, not VhostRequest: the enum is internal and a theory's parameters must be public.
    [InlineData((uint)VhostRequest.SetVringNum)]
    [InlineData((uint)VhostRequest.SetVringBase)]
    [InlineData((uint)VhostRequest.GetVringBase)]
    [InlineData((uint)VhostRequest.SetVringEnable)]
    public void RingIndexBeyondTheQueues(uint req)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send((VhostRequest)req, RawClient.State(7, 1));
        AssertDroppedAndStillServing(rig, c, "out of range");
    }

    [Fact]
    public void RingSizeNotAPowerOfTwo()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetVringNum, RawClient.State(0, 100));
        AssertDroppedAndStillServing(rig, c, "not a power of two");
    }

    [Fact]
    public void FeaturesNeverOffered()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetFeatures, 1UL << 60);
        AssertDroppedAndStillServing(rig, c, "never offered");
    }

    [Fact]
    public void IotlbUpdateWithAnOverflowingRange()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.IotlbMsg, new IotlbRequest(ulong.MaxValue - 0x10, 0x1000, 0x1000_0000, IotlbMsgType.PermReadWrite, IotlbMsgType.Update).ToArray());
        AssertDroppedAndStillServing(rig, c, "overflowing range");
    }

    [Fact]
    public void GetConfigLargerThanAnyConfig()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        var p = new byte[12];
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), 4000);
        c.Send(VhostRequest.GetConfig, p);
        AssertDroppedAndStillServing(rig, c, "GetConfig");
    }

    [Fact]
    public void GetConfigAnswersExactlyTheSizeAsked()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        var p = new byte[12 + 60];
        BinaryPrimitives.WriteUInt32LittleEndian(p.AsSpan(4), 60);
        c.Send(VhostRequest.GetConfig, p);
        var r = c.Receive();
        Assert.NotNull(r);
        Assert.Equal(72u, r!.Value.Header.Size);
        Assert.Equal((ulong)rig.Disk.Size / 512, BinaryPrimitives.ReadUInt64LittleEndian(r.Value.Body.AsSpan(12)));
    }

    [Fact]
    public void GetVringBaseOnARingNeverStartedAnswersAndLogs()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetVringBase, RawClient.State(0, 42));
        c.Send(VhostRequest.GetVringBase, RawClient.State(0, 0));
        var r = c.Receive();
        Assert.NotNull(r);
        Assert.Equal(42u, BinaryPrimitives.ReadUInt32LittleEndian(r!.Value.Body.AsSpan(4)));
        Assert.Contains(rig.Log.Lines, l => l.Contains("never started"));
        Assert.Equal(rig.DiskBefore, rig.Disk.Data.ToArray());
    }

    [Fact]
    public void RingAddressesOutsideEveryRegionNeedReset()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        using var mem = MemFdOf(1 << 20);
        using var kick = EventFd.Create();   // the ring must fail before it is ever read
        c.Send(VhostRequest.SetProtocolFeatures, 1UL << VhostProtocolFeature.Status);
        c.Send(VhostRequest.SetFeatures, VirtioFeature.Bit(VirtioFeature.Version1));
        c.Send(VhostRequest.SetMemTable, MemTable(new VhostMemoryRegion(0, 1 << 20, 0x1000_0000, 0)), [mem]);
        c.Send(VhostRequest.SetVringNum, RawClient.State(0, 16));
        var addr = new byte[40];
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(8), 0xDEAD_0000_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(16), 0xDEAD_0001_0000);
        BinaryPrimitives.WriteUInt64LittleEndian(addr.AsSpan(24), 0xDEAD_0002_0000);
        c.Send(VhostRequest.SetVringAddr, addr);
        c.Send(VhostRequest.SetVringKick, RawClient.U64(0), [kick.Handle]);
        var end = Environment.TickCount64 + 5000;
        while (!rig.Log.Lines.Any(l => l.Contains("outside every memory region")) && Environment.TickCount64 < end) Thread.Sleep(10);
        Assert.Contains(rig.Log.Lines, l => l.Contains("outside every memory region"));
        ulong status = c.AskU64(VhostRequest.GetStatus);
        Assert.NotEqual(0UL, status & (ulong)DeviceStatus.DeviceNeedsReset);
        Assert.Equal(rig.DiskBefore, rig.Disk.Data.ToArray());
    }

    [Fact]
    public void MessagesAfterHalfCloseAreServedThenTheConnectionEnds()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.GetQueueNum, ReadOnlySpan<byte>.Empty);
        c.ShutdownWrite();
        var r = c.Receive();
        Assert.NotNull(r);
        Assert.Equal(1UL, BinaryPrimitives.ReadUInt64LittleEndian(r!.Value.Body));
        Assert.True(c.IsClosedByPeer());
        Assert.True(rig.WaitClosed(1));
        Assert.Contains(rig.Log.Lines, l => l.Contains("front-end closed the connection"));
        using var next = rig.Connect();
        Assert.Equal(1UL, next.AskU64(VhostRequest.GetQueueNum));
    }
}
