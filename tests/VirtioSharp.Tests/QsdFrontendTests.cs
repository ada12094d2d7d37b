using System.Diagnostics;
using VirtioSharp.Devices.Block;
using VirtioSharp.Dma;
using VirtioSharp.Drivers.Block;
using VirtioSharp.Spec;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

/// <summary>
/// The VirtioSharp driver stack driving a real back-end: qemu-storage-daemon's vhost-user-blk export (installed by
/// scripts/testbed/setup.sh, which scripts/test.sh runs first).
/// </summary>
public class QsdFrontendTests
{
    // bounceOnly: the memory table holds only a window of rings and bounce pool (a protected guest); qsd is unchanged
    // and needs no ACCESS_PLATFORM for it, since the addresses it gets are guest-physical ones inside the window.
    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void BlkDriverDrivesQemuStorageDaemon(bool bounceOnly)
    {
        Assert.True(File.Exists("/usr/bin/qemu-storage-daemon"), "qemu-storage-daemon is missing: run scripts/testbed/setup.sh (scripts/test.sh does)");
        var dir = Directory.CreateTempSubdirectory("vs-qsd-").FullName;
        string img = Path.Combine(dir, "disk.img"), sock = Path.Combine(dir, "s");
        var original = new byte[4 << 20];
        new Random(21).NextBytes(original);
        File.WriteAllBytes(img, original);
        var psi = new ProcessStartInfo("qemu-storage-daemon",
            $"--blockdev driver=file,node-name=file0,filename={img} --blockdev driver=raw,node-name=disk0,file=file0 " +
            $"--export type=vhost-user-blk,id=exp0,node-name=disk0,addr.type=unix,addr.path={sock},writable=on,num-queues=2")
        { RedirectStandardError = true, RedirectStandardOutput = true };
        using var qsd = Process.Start(psi)!;
        try
        {
            for (int i = 0; i < 100 && !File.Exists(sock); i++) Thread.Sleep(50);
            if (!File.Exists(sock))
            {
                qsd.Kill();
                Assert.Fail("qemu-storage-daemon did not create its socket: " + qsd.StandardError.ReadToEnd());
            }
            var options = new VhostUserFrontendOptions { MemorySize = 16 << 20, SharedWindowSize = bounceOnly ? 2UL << 20 : 0 };
            using (var fe = VhostUserFrontend.Connect(sock, DeviceId.Block, options))
            using (var drv = BlkDriver.Probe(fe, fe.Environment()))
            {
                Assert.Equal(bounceOnly ? DmaOpsKind.Bounce : DmaOpsKind.Direct, drv.Device.Decision.Ops);
                Assert.Equal((ulong)original.Length / 512, drv.CapacitySectors);
                Assert.Equal(2, drv.NumQueues);
                var data = new byte[128 * 1024];
                new Random(22).NextBytes(data);
                Assert.Equal(BlkStatus.Ok, drv.Write(16, data));
                Assert.Equal(BlkStatus.Ok, drv.Flush());
                var back = new byte[data.Length];
                Assert.Equal(BlkStatus.Ok, drv.Read(16, back));
                Assert.Equal(data, back);
                var head = new byte[8192];
                Assert.Equal(BlkStatus.Ok, drv.Read(0, head));
                Assert.Equal(original.AsSpan(0, 8192).ToArray(), head);
                if (bounceOnly) Assert.True(fe.BouncePool!.SlotsHighWater > 0 && drv.Device.Dma.Stats.BounceBytesIn >= data.Length);
            }
            qsd.Kill();
            qsd.WaitForExit(5000);
            var onDisk = File.ReadAllBytes(img);
            Assert.Equal(original.AsSpan(0, 8192).ToArray(), onDisk.AsSpan(0, 8192).ToArray());
            var expect = new byte[128 * 1024];
            new Random(22).NextBytes(expect);
            Assert.Equal(expect, onDisk.AsSpan(16 * 512, expect.Length).ToArray());
        }
        finally
        {
            if (!qsd.HasExited) qsd.Kill();
            Directory.Delete(dir, true);
        }
    }
}
