using System.Buffers.Binary;
using VirtioSharp.Spec;
using VirtioSharp.Tests.Support;
using VirtioSharp.VhostUser.Backend;
using VirtioSharp.Interop;
using VirtioSharp.VhostUser.Interop;
using VirtioSharp.VhostUser.Protocol;

namespace VirtioSharp.Tests;

/// <summary>
/// GET/SET_INFLIGHT_FD over the socket: the region's layout follows the negotiated ring layout (QEMU sends
/// SET_FEATURES first), and sizes that cannot hold the queues are refused with a reason.
/// </summary>
public class VhostInflightProtocolTests
{
    private static byte[] Inflight(ulong size, ulong offset, ushort queues, ushort queueSize)
    {
        var b = new byte[24];
        BinaryPrimitives.WriteUInt64LittleEndian(b, size);
        BinaryPrimitives.WriteUInt64LittleEndian(b.AsSpan(8), offset);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(16), queues);
        BinaryPrimitives.WriteUInt16LittleEndian(b.AsSpan(18), queueSize);
        return b;
    }

    private static ulong V1 => VirtioFeature.Bit(VirtioFeature.Version1);
    private static ulong Packed => VirtioFeature.Bit(VirtioFeature.RingPacked);

    private static void Negotiate(RawClient c, ulong features)
    {
        c.Send(VhostRequest.SetProtocolFeatures, 1UL << VhostProtocolFeature.InflightShmfd);
        c.Send(VhostRequest.SetFeatures, features);
    }

    // vhost-user.rst: GET/SET_INFLIGHT_FD only once INFLIGHT_SHMFD was negotiated.
    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public void InflightMessagesBeforeInflightShmfdWasNegotiatedAreRefused(bool get)
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        c.Send(VhostRequest.SetFeatures, V1);
        using var fd = MemFd.Create("inflight", InflightQueue.QueueBytes(64));
        if (get) c.Send(VhostRequest.GetInflightFd, Inflight(0, 0, 1, 64));
        else c.Send(VhostRequest.SetInflightFd, Inflight(InflightQueue.QueueBytes(64), 0, 1, 64), [fd]);
        Assert.True(c.IsClosedByPeer());
        Assert.Contains(rig.Log.Lines, l => l.Contains(get ? "GetInflightFd before INFLIGHT_SHMFD" : "SetInflightFd before INFLIGHT_SHMFD"));
    }

    private static ulong AskInflightSize(RawClient c, ushort queueSize)
    {
        c.Send(VhostRequest.GetInflightFd, Inflight(0, 0, 1, queueSize));
        var fds = new List<SafeFd>();
        var r = c.Receive(fds) ?? throw new IOException("GET_INFLIGHT_FD: the back-end closed the connection");
        var fd = Assert.Single(fds);
        ulong size = BinaryPrimitives.ReadUInt64LittleEndian(r.Body);
        Assert.Equal((long)size, fd.GetSize());   // the memfd really is that large
        fd.Dispose();
        Assert.Equal(queueSize, BinaryPrimitives.ReadUInt16LittleEndian(r.Body.AsSpan(18)));
        return BinaryPrimitives.ReadUInt64LittleEndian(r.Body);
    }

    [Fact]
    public void RegionSizeFollowsTheNegotiatedRingLayout()
    {
        using var rig = new VhostRig(packed: true);
        using (var c = rig.Connect())
        {
            Negotiate(c, V1);
            Assert.Equal(InflightQueue.QueueBytes(128), AskInflightSize(c, 128));
        }
        Assert.True(rig.WaitClosed(1));
        using (var c = rig.Connect())
        {
            Negotiate(c, V1 | Packed);
            // Packed: 32-byte entries with descriptor copies, and sizes need not be powers of two (§2.8).
            Assert.Equal(PackedInflightQueue.QueueBytes(100), AskInflightSize(c, 100));
            Assert.True(PackedInflightQueue.QueueBytes(100) > InflightQueue.QueueBytes(128));
        }
    }

    [Fact]
    public void SplitRegionOfAQueueSizeThatIsNoPowerOfTwoIsRefused()
    {
        using var rig = new VhostRig();
        using var c = rig.Connect();
        Negotiate(c, V1);
        c.Send(VhostRequest.GetInflightFd, Inflight(0, 0, 1, 100));
        Assert.True(c.IsClosedByPeer());
        Assert.Contains(rig.Log.Lines, l => l.Contains("GET_INFLIGHT_FD") && l.Contains("size 100"));
    }

    [Fact]
    public void PackedRegionTooSmallForItsQueuesIsRefused()
    {
        using var rig = new VhostRig(packed: true);
        using var c = rig.Connect();
        Negotiate(c, V1 | Packed);
        // Big enough for the split layout of the same size, not for the packed one.
        ulong size = InflightQueue.QueueBytes(64);
        using var fd = MemFd.Create("inflight", size);
        c.Send(VhostRequest.SetInflightFd, Inflight(size, 0, 1, 64), [fd]);
        Assert.True(c.IsClosedByPeer());
        Assert.Contains(rig.Log.Lines, l => l.Contains("SET_INFLIGHT_FD") && l.Contains("inconsistent"));
    }
}
