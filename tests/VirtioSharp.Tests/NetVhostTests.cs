using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Queues;
using VirtioSharp.Spec;
using VirtioSharp.Spec.Net;
using VirtioSharp.Testing;

namespace VirtioSharp.Tests;

using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// virtio-net behind the real vhost-user back-end: the port reads and writes guest memory straight through host vectors
/// (no copy buffer), split and packed, with merged receive buffers.
/// </summary>
public class NetVhostTests
{
    private static byte[] Frame(int size, int seed)
    {
        var b = new byte[size];
        new Random(seed).NextBytes(b);
        b[0] = 0x52; b[1] = 0x54; b[2] = 0; b[3] = 0x12; b[4] = 0x34; b[5] = 0x56;
        return b;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void FramesMoveStraightBetweenThePortAndGuestMemory(bool packed)
    {
        var port = new MemoryNetPort();
        var dev = new NetDevice<RMem>([port], new NetDeviceOptions { QueueSize = 256, OfferPacked = packed, ControlQueue = false, Mtu = 9000 });
        using var rig = new VhostDeviceRig(dev);
        using (var fe = rig.Connect())
        using (var drv = NetDriver.Probe(fe, fe.Environment(), rxBufferSize: 1024))
        {
            Assert.Equal(packed, drv.Device.Has(VirtioFeature.RingPacked));
            Assert.Equal(9000, drv.Mtu);
            var sizes = new[] { 60, 1514, 9018, 333 };
            for (int i = 0; i < sizes.Length; i++) Assert.True(drv.Send(Frame(sizes[i], i)));
            Assert.True(drv.WaitForTransmits());
            Assert.Equal(sizes.Select((n, i) => Frame(n, i)), port.Sent.Select(s => s.Frame));
            for (int round = 0; round < 4; round++)
                for (int i = 0; i < sizes.Length; i++)
                {
                    port.Inject(Frame(sizes[i], 10 * round + i));
                    var got = drv.Receive();
                    Assert.Equal(Frame(sizes[i], 10 * round + i), got.Frame);
                    Assert.Equal((12 + sizes[i] + 1023) / 1024, got.Buffers);
                }
            Assert.Equal(0, drv.RxErrors);
        }
        var st = dev.Stats;
        Assert.Equal(4, st.TxPackets);
        Assert.Equal(16, st.RxPackets);
        Assert.True(st.RxMergedBuffers >= 4 * 9);
        Assert.Equal(0, st.CopiedFrames);
        Assert.Empty(rig.ResetLines);
    }

    /// <summary>
    /// Receive buffers the device popped ahead of frames go back to the driver (used, empty) when the ring stops
    /// (GET_VRING_BASE), instead of being lost to a back-end restart or a migration.
    /// </summary>
    [Fact]
    public void AStoppedRingGivesItsHeldReceiveBuffersBack()
    {
        var port = new MemoryNetPort();
        var dev = new NetDevice<RMem>([port], new NetDeviceOptions { ControlQueue = false });
        using var rig = new VhostDeviceRig(dev);
        using var fe = rig.Connect();
        using var drv = NetDriver.Probe(fe, fe.Environment(), rxBufferSize: 512);
        // With 512-byte buffers the device holds three (room for 12 + 1518 bytes) before a frame comes.
        port.Inject(Frame(60, 1));
        Assert.Equal(Frame(60, 1), drv.Receive().Frame);
        var q = drv.Device.Queue(0);
        fe.DeleteQueue(0);
        int back = 0;
        while (q.GetUsed(out _, out uint len) == QueueStatus.Ok)
        {
            Assert.Equal(0u, len);
            back++;
        }
        Assert.True(back >= 2, $"{back} held buffers came back");
        Assert.Empty(rig.ResetLines);
    }
}
