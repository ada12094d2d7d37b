namespace VirtioSharp.Interop;

/// <summary>Creates anonymous shared memory (memfd).</summary>
internal static class MemFd
{
    /// <summary>Seals a back-end requires of shared memory: the size is fixed, and the seals themselves.</summary>
    public const int SizeSeals = LibC.F_SEAL_SHRINK | LibC.F_SEAL_GROW | LibC.F_SEAL_SEAL;

    /// <summary>
    /// A memfd of <paramref name="size"/> bytes, sealed with <paramref name="seals"/> (default: its size can never
    /// change, so a peer we share it with can map it without fearing SIGBUS). Pass 0 for an unsealed one.
    /// </summary>
    public static SafeFd Create(string name, ulong size, int seals = SizeSeals)
    {
        int fd = LibC.MemfdCreate(name, LibC.MFD_CLOEXEC | LibC.MFD_ALLOW_SEALING);
        if (fd < 0) throw new IOException($"memfd_create failed: {LibC.Describe(LibC.Errno)}");
        var h = new SafeFd(fd);
        if (LibC.FTruncate(fd, (long)size) != 0 || (seals != 0 && LibC.Fcntl(fd, LibC.F_ADD_SEALS, seals) != 0))
        {
            int e = LibC.Errno;
            h.Dispose();
            throw new IOException($"sizing and sealing a memfd of {size} bytes failed: {LibC.Describe(e)}");
        }
        return h;
    }
}
