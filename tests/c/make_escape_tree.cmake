# The tree test_served_files' confine_escape case reads, made by a ctest
# fixture on the host: symbolic links, which a Windows program under Wine
# cannot make (Wine 8's CreateSymbolicLinkW does nothing) but follows.
#   cmake -DDIR=<dir> -P tests/c/make_escape_tree.cmake
if(NOT DIR)
  message(FATAL_ERROR "make_escape_tree.cmake: -DDIR=<dir> is required")
endif()
file(REMOVE_RECURSE ${DIR})
file(MAKE_DIRECTORY ${DIR}/root)
file(WRITE ${DIR}/root/file "inside")
file(WRITE ${DIR}/outside.txt "outside")
file(CREATE_LINK file ${DIR}/root/link_in SYMBOLIC)
file(CREATE_LINK ../outside.txt ${DIR}/root/link_out SYMBOLIC)
file(CREATE_LINK .. ${DIR}/root/dir_out SYMBOLIC)
