using VirtioSharp.Devices.Block;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

/// <summary>
/// The VirtioSharp driver stack (BlkDriver over the generic driver core) driving the VirtioSharp vhost-user back-end
/// through a real Unix socket, a memfd shared between them, and eventfds: the whole transport without QEMU.
/// </summary>
public class VhostUserFrontendTests
{
    [Theory]
    [InlineData(1, false)]
    [InlineData(4, false)]
    [InlineData(1, true)]
    [InlineData(4, true)]
    public void BlkDriverReadsAndWritesThroughTheVhostUserBackend(int queues, bool packed)
    {
        using var rig = new VhostRig(2 << 20, queues, packed: packed);
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block, 16 << 20);
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        Assert.Equal(queues, drv.NumQueues);
        Assert.Equal(packed, drv.Device.Queue(0).IsPacked);
        Assert.Equal(4096UL, drv.CapacitySectors);
        var data = new byte[256 * 1024];
        new Random(5).NextBytes(data);
        for (int i = 0; i < 8; i++)
            Assert.Equal(BlkStatus.Ok, drv.Write((ulong)(i * 64), data.AsSpan(i * 32768, 32768)));
        Assert.Equal(data, rig.Disk.Data[..data.Length].ToArray());
        var back = new byte[data.Length];
        Assert.Equal(BlkStatus.Ok, drv.Read(0, back));
        Assert.Equal(data, back);
        Assert.Equal(BlkStatus.Ok, drv.Flush());
        Assert.Equal(BlkStatus.IoErr, drv.Read(4095, new byte[4096]));
        Assert.True(rig.Device.Stats.Writes >= 8);
        Assert.Equal(rig.DiskBefore.AsSpan(data.Length).ToArray(), rig.Disk.Data[data.Length..].ToArray());
    }

    /// <summary>
    /// A front-end that logs as QEMU does during a migration (LOG_SHMFD log, VHOST_F_LOG_ALL) finds every page of a read
    /// the back-end served marked in its log; without logging the back-end marks nothing.
    /// </summary>
    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public void ReadsTheBackEndServesAreInTheFrontEndsDirtyLog(bool dirtyLog, bool packed)
    {
        using var rig = new VhostRig(2 << 20, packed: packed);
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block, 16 << 20, dirtyLog: dirtyLog);
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        Assert.Equal(dirtyLog, fe.DirtyLogging);
        fe.CountDirtyPages(clear: true);
        var back = new byte[256 * 1024];
        Assert.Equal(BlkStatus.Ok, drv.Read(0, back));
        Assert.Equal(rig.DiskBefore.AsSpan(0, back.Length).ToArray(), back);
        long pages = fe.CountDirtyPages();
        if (dirtyLog) Assert.True(pages >= 64, $"a 256 KiB read marked {pages} pages");
        else Assert.Equal(0, pages);
        Assert.Equal(dirtyLog, rig.Server.Current!.DirtyLogCounters.Pages >= 64);
    }

    [Fact]
    public void ReadOnlyBackendRejectsWritesAndKeepsTheDisk()
    {
        using var rig = new VhostRig(1 << 20, readOnly: true);
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block, 8 << 20);
        using var drv = BlkDriver.Probe(fe, fe.Environment());
        Assert.True(drv.ReadOnly);
        Assert.Equal(BlkStatus.IoErr, drv.Write(0, new byte[4096]));
        Assert.Equal(rig.DiskBefore, rig.Disk.Data.ToArray());
    }

    [Fact]
    public void ReconnectAfterTheFrontEndLeavesServesAgain()
    {
        using var rig = new VhostRig(1 << 20);
        for (int round = 0; round < 3; round++)
        {
            using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Block, 8 << 20);
            using var drv = BlkDriver.Probe(fe, fe.Environment());
            var d = new byte[4096];
            new Random(round).NextBytes(d);
            Assert.Equal(BlkStatus.Ok, drv.Write((ulong)round * 8, d));
            var b = new byte[4096];
            Assert.Equal(BlkStatus.Ok, drv.Read((ulong)round * 8, b));
            Assert.Equal(d, b);
        }
        Assert.True(rig.WaitClosed(3));
        Assert.Equal(3, rig.Server.Stats.Connections);
    }
}
