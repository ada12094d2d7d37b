using VirtioSharp.Devices.Net;
using VirtioSharp.Drivers.Net;
using VirtioSharp.Memory;
using VirtioSharp.Spec;
using VirtioSharp.Testing;
using VirtioSharp.VhostUser.Frontend;

namespace VirtioSharp.Tests;

using RMem = DeviceMemory<TranslatorRef, RamPort>;

/// <summary>
/// Live migration of a virtio-net guest: while the front-end logs (VHOST_F_LOG_ALL with a shared log), every guest page
/// the net device writes — received payloads written by the port straight into the guest's buffers, the mergeable
/// header with num_buffers, used entries and used idx (split) or used descriptors (packed) — is marked, or the
/// destination would resume with stale pages. Checked the way a migration would lose them: guest RAM before and after
/// a burst of received frames, every changed page the driver did not write itself must be in the log.
/// </summary>
public class NetDirtyLogTests
{
    private const ulong Page = 4096;

    private static byte[] Frame(int size, int seed)
    {
        var b = new byte[size];
        new Random(seed).NextBytes(b);
        b[0] = 0x52; b[1] = 0x54; b[2] = 0; b[3] = 0x12; b[4] = 0x34; b[5] = 0x56;
        return b;
    }

    private static byte[] Snapshot(GuestMemory m)
    {
        var b = new byte[m.TotalSize];
        Assert.Equal(MemStatus.Ok, m.Read(0, b));
        return b;
    }

    /// <summary>Pages of [addr, addr + len).</summary>
    private static IEnumerable<ulong> Pages(ulong addr, ulong len)
    {
        for (ulong p = addr / Page; p <= (addr + len - 1) / Page; p++) yield return p;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void EveryPageTheNetDeviceWritesWhileLoggingIsInTheLog(bool packed)
    {
        var port = new MemoryNetPort();
        var dev = new NetDevice<RMem>([port], new NetDeviceOptions { ControlQueue = false, OfferPacked = packed, Mtu = 9000 });
        using var rig = new VhostDeviceRig(dev);
        using var fe = VhostUserFrontend.Connect(rig.SocketPath, DeviceId.Network, new VhostUserFrontendOptions { MemorySize = 16UL << 20, DirtyLog = true });
        using var drv = NetDriver.Probe(fe, fe.Environment(), rxBufferSize: 1024);
        Assert.True(fe.DirtyLogging);
        Assert.Equal(packed, drv.Device.Has(VirtioFeature.RingPacked));
        Assert.True(drv.Device.Has(Spec.Net.NetFeature.MrgRxbuf));
        port.Inject(Frame(60, 0));                        // the rings run and the device holds its receive buffers
        Assert.Equal(Frame(60, 0), drv.Receive().Frame);

        var before = Snapshot(fe.Memory);
        fe.CountDirtyPages(clear: true);                  // a migration's sync: from here every device write must be logged
        int[] sizes = [60, 1514, 9018, 333, 4000, 9018, 1514];
        int merged = 0;
        for (int i = 0; i < sizes.Length; i++)
        {
            port.Inject(Frame(sizes[i], i + 1));
            var got = drv.Receive();
            Assert.Equal(Frame(sizes[i], i + 1), got.Frame);
            merged += got.Buffers - 1;
        }
        Assert.True(merged >= 20, $"only {merged} extra buffers: the frames were not spread over several (MRG_RXBUF)");
        var after = Snapshot(fe.Memory);

        // What the driver itself writes (CPU writes, which the front-end tracks by other means): descriptors and the
        // driver area of each queue. Everything else that changed was written by the device.
        var driverPages = new HashSet<ulong>();
        for (int q = 0; q < 2; q++)
        {
            var l = drv.Device.Queue(q).DeviceLayout;
            driverPages.UnionWith(Pages(l.Desc, (ulong)l.QueueSize * 16));
            if (!packed) driverPages.UnionWith(Pages(l.Avail, SplitRingLayout.AvailBytes(l.QueueSize)));
            else driverPages.UnionWith(Pages(l.Avail, 4));
        }
        var changed = new List<ulong>();
        for (ulong p = 0; p < (ulong)before.Length / Page; p++)
            if (!before.AsSpan((int)(p * Page), (int)Page).SequenceEqual(after.AsSpan((int)(p * Page), (int)Page))) changed.Add(p);
        var deviceWritten = changed.Where(p => !driverPages.Contains(p)).ToList();
        var missed = deviceWritten.Where(p => !fe.IsPageDirty(p * Page)).ToList();
        Assert.True(missed.Count == 0, $"pages written by the device but not logged: {string.Join(',', missed.Select(p => $"0x{p * Page:x}"))}");
        // Not vacuous: the payloads (tens of KiB) changed pages outside the rings, and the used side was logged.
        Assert.True(deviceWritten.Count >= 8, $"only {deviceWritten.Count} device-written pages changed");
        var rx = drv.Device.Queue(0).DeviceLayout;
        ulong usedSide = packed ? rx.Desc : rx.UsedIdxAddr;   // packed: used descriptors go over the ring
        Assert.True(fe.IsPageDirty(usedSide), "the receive queue's used side was not logged");
        Assert.Empty(rig.ResetLines);
    }
}
