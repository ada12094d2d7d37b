using System.Diagnostics;
using VirtioSharp.Devices.Block;
using VirtioSharp.Storage;
using static VirtioSharp.Tests.Support.StorageRig;

namespace VirtioSharp.Tests;

/// <summary>
/// FileStorage on a real block device: a loop device (4096-byte sectors) over a file on ext4. Needs root and losetup
/// (the testbed runs as root); without them the test returns early and says so on stderr.
/// </summary>
public class FileStorageBlockDeviceTests
{
    private static string? Losetup(params string[] args)
    {
        try
        {
            var psi = new ProcessStartInfo("losetup") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var a in args) psi.ArgumentList.Add(a);
            using var p = Process.Start(psi)!;
            string output = p.StandardOutput.ReadToEnd();
            p.WaitForExit();
            return p.ExitCode == 0 ? output.Trim() : null;
        }
        catch (System.ComponentModel.Win32Exception) { return null; }
    }

    public static TheoryData<FileAioMode, FileCacheMode> Modes()
    {
        var d = new TheoryData<FileAioMode, FileCacheMode>();
        foreach (var a in new[] { FileAioMode.IoUring, FileAioMode.Threads, FileAioMode.Sync }) d.Add(a, FileCacheMode.Writeback);
        d.Add(FileAioMode.IoUring, FileCacheMode.None);
        return d;
    }

    [Theory]
    [MemberData(nameof(Modes))]
    public void FileStorage_on_a_loop_device_uses_its_geometry_and_discards_through_BLKDISCARD(FileAioMode aio, FileCacheMode cache)
    {
        const int MiB = 1 << 20;
        // The suite runs as root (scripts/test.sh installs the testbed): a missing loop device is a failure, not a skip.
        Assert.True(File.Exists("/dev/loop-control") && Environment.UserName == "root",
            "this test needs root and loop devices (/dev/loop-control) to make a 4K-sector block device");
        string backing = NewFile(Ext4Dir, 8 * MiB, fill: 0x3C);
        string? dev = Losetup("--find", "--show", "--sector-size", "4096", backing);
        if (dev == null) { Delete(backing); Assert.Fail("losetup --find --show --sector-size 4096 failed"); }
        try
        {
            using var s = Open(dev, aio, cache);
            Assert.Contains("block device", s.Info.Description);
            Assert.Equal(4096u, s.Info.LogicalBlockSize);   // BLKSSZGET
            Assert.Equal(4096u, s.Info.PhysicalBlockSize);  // BLKPBSZGET
            Assert.Equal((ulong)8 * MiB, s.Info.Size);      // BLKGETSIZE64
            Assert.Equal((ulong)8 * MiB, s.QuerySize());
            Assert.True(s.Info.SupportsDiscard);            // the loop device's queue/discard_max_bytes
            // A 512-byte block cannot be asked of a 4096-byte-sector device under O_DIRECT.
            if (cache == FileCacheMode.None)
                Assert.Throws<ArgumentException>(() => new FileStorage(new FileStorageOptions { Path = dev, Cache = cache, LogicalBlockSize = 512 }));

            using var q = s.OpenQueue(0, 8);
            Assert.All(Read(q, 0, 8192), b => Assert.Equal(0x3C, b));
            var data = Pattern(64 * 1024, 3);
            Assert.Equal(0, Write(q, 4 * MiB, data));
            Assert.Equal(0, Run(q, new BlockRequest { Op = BlockOp.Flush, Tag = 1 }));
            Assert.Equal(data, Read(q, 4 * MiB, data.Length));

            // DISCARD → BLKDISCARD → the loop driver punches its backing file.
            long before = Allocated(backing);
            Assert.Equal(0, Run(q, Range(BlockOp.Discard, MiB, MiB, 2)));
            Assert.True(IsHole(backing, MiB, MiB));
            Assert.True(Allocated(backing) <= before - MiB, $"{before} -> {Allocated(backing)} bytes allocated");
            Assert.All(Read(q, MiB, MiB), b => Assert.Equal(0, b));

            Assert.Equal(0, Run(q, Range(BlockOp.WriteZeroes, 3 * MiB, 256 * 1024, 3)));
            Assert.All(Read(q, 3 * MiB, 256 * 1024), b => Assert.Equal(0, b));
            Assert.Equal(0, Run(q, Range(BlockOp.WriteZeroes, 5 * MiB, 256 * 1024, 4, BlockRequestFlags.Unmap)));
            Assert.All(Read(q, 5 * MiB, 256 * 1024), b => Assert.Equal(0, b));
            Assert.All(Read(q, 6 * MiB, 4096), b => Assert.Equal(0x3C, b));
            Assert.Equal(0, s.Stats.Errors);
        }
        finally
        {
            Losetup("-d", dev);
            Delete(backing);
        }
    }
}
