namespace VirtioSharp.VhostUser.Interop;

/// <summary>Creates anonymous shared memory (memfd).</summary>
internal static class MemFd
{
    public static SafeFd Create(string name, ulong size)
    {
        int fd = LibC.MemfdCreate(name, LibC.MFD_CLOEXEC);
        if (fd < 0) throw new IOException($"memfd_create failed: {LibC.Describe(LibC.Errno)}");
        var h = new SafeFd(fd);
        if (LibC.FTruncate(fd, (long)size) != 0)
        {
            int e = LibC.Errno;
            h.Dispose();
            throw new IOException($"ftruncate of memfd to {size} bytes failed: {LibC.Describe(e)}");
        }
        return h;
    }
}
